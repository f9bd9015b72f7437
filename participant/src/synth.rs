//! A synthetic, learnable stand-in for chest X-ray datasets (public ones
//! cannot be downloaded where tests run): grayscale PNGs in the image-folder
//! layout, `train/` and `test/` with `Covid`, `Normal` and `Viral Pneumonia`.
//!
//! Every image is a noisy chest silhouette (body, two dark lung fields,
//! spine, ribs) with random placement and brightness. The classes differ in
//! what sits inside the lungs, loosely after their radiology:
//! * `Normal`: clear lung fields;
//! * `Covid`: bilateral, peripheral, lower-zone ground-glass blobs;
//! * `Viral Pneumonia`: diffuse streaky (interstitial) lines and perihilar haze.
//!
//! Sites get non-IID class mixes through [`SynthConfig::skewed`].

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Errors writing the dataset.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Creating a directory or writing a PNG failed.
    #[error("writing {path} failed")]
    Write {
        /// Path.
        path: PathBuf,
        /// Encoder or OS error.
        #[source]
        source: image::ImageError,
    },
    /// Creating a directory failed.
    #[error("creating {path} failed")]
    CreateDir {
        /// Path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Options out of range.
    #[error("invalid synthetic dataset options: {0}")]
    Options(String),
}

/// Class folder names, in label order.
pub const CLASSES: [&str; 3] = ["Covid", "Normal", "Viral Pneumonia"];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Image side in pixels.
    pub size: u32,
    /// Training images per class (in [`CLASSES`] order).
    pub train_per_class: [usize; 3],
    /// Test images per class.
    pub test_per_class: [usize; 3],
    /// Seed: the same config and seed write the same bytes.
    pub seed: u64,
    /// Standard deviation of the pixel noise (0..1 scale).
    pub noise: f32,
}

impl SynthConfig {
    /// Balanced classes.
    pub fn balanced(size: u32, train_per_class: usize, test_per_class: usize, seed: u64) -> Self {
        Self {
            size,
            train_per_class: [train_per_class; 3],
            test_per_class: [test_per_class; 3],
            seed,
            noise: 0.06,
        }
    }

    /// A non-IID site: `dominant` gets `share` of `train_total` images, the
    /// other classes split the rest evenly (at least one image each). The
    /// test split stays balanced so sites measure the same task.
    pub fn skewed(
        size: u32,
        train_total: usize,
        test_per_class: usize,
        dominant: usize,
        share: f64,
        seed: u64,
    ) -> Self {
        let share = share.clamp(0.0, 1.0);
        let dom = ((train_total as f64) * share).round() as usize;
        let rest = train_total.saturating_sub(dom) / 2;
        let mut train = [rest.max(1); 3];
        train[dominant % 3] = dom.max(1);
        Self {
            size,
            train_per_class: train,
            test_per_class: [test_per_class; 3],
            seed,
            noise: 0.06,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// Images written under `train/`.
    pub train: usize,
    /// Images written under `test/`.
    pub test: usize,
}

/// Writes the dataset under `root` (created if needed).
pub fn write_dataset(root: &Path, config: &SynthConfig) -> Result<SynthSummary, SynthError> {
    if !(8..=1024).contains(&config.size) {
        return Err(SynthError::Options(format!(
            "size must be 8..=1024, got {}",
            config.size
        )));
    }
    let mut summary = SynthSummary { train: 0, test: 0 };
    for (split, counts, salt) in [
        ("train", config.train_per_class, 0x7EA1_u64),
        ("test", config.test_per_class, 0x7E57_u64),
    ] {
        for (label, class) in CLASSES.iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).map_err(|source| SynthError::CreateDir {
                path: dir.clone(),
                source,
            })?;
            for i in 0..counts[label] {
                // One RNG per image, so adding images never changes others.
                let seed = config
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(salt << 40)
                    .wrapping_add((label as u64) << 32)
                    .wrapping_add(i as u64);
                let img = render(label, config.size, config.noise, seed);
                let path = dir.join(format!("{split}-{label}-{i:05}.png"));
                img.save(&path)
                    .map_err(|source| SynthError::Write { path, source })?;
            }
            if split == "train" {
                summary.train += counts[label];
            } else {
                summary.test += counts[label];
            }
        }
    }
    Ok(summary)
}

/// Renders one image of class `label` (index into [`CLASSES`]).
pub fn render(label: usize, size: u32, noise: f32, seed: u64) -> GrayImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = size as f32;
    // Random pose and exposure.
    let cx: f32 = 0.5 + rng.random_range(-0.04..0.04);
    let cy: f32 = 0.52 + rng.random_range(-0.04..0.04);
    let scale: f32 = rng.random_range(0.9..1.08);
    let exposure: f32 = rng.random_range(0.85..1.15);
    let lung_dx = 0.2 * scale;
    let (lung_rx, lung_ry) = (0.14 * scale, 0.3 * scale);

    // Class-specific lesions, in normalised coordinates.
    let mut blobs: Vec<(f32, f32, f32, f32)> = Vec::new(); // x, y, radius, strength
    let mut streaks: Vec<(f32, f32, f32, f32)> = Vec::new(); // x, y, angle, length
    match label {
        0 => {
            // Covid: peripheral lower-zone ground glass, both sides.
            for side in [-1.0f32, 1.0] {
                for _ in 0..rng.random_range(2..4) {
                    let x = cx + side * (lung_dx + lung_rx * rng.random_range(0.2..0.7));
                    let y = cy + lung_ry * rng.random_range(0.0..0.7);
                    blobs.push((
                        x,
                        y,
                        rng.random_range(0.05..0.09),
                        rng.random_range(0.25..0.4),
                    ));
                }
            }
        }
        2 => {
            // Viral pneumonia: streaks across both lungs plus perihilar haze.
            for _ in 0..rng.random_range(10..16) {
                let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
                let x = cx + side * (lung_dx + lung_rx * rng.random_range(-0.7..0.7));
                let y = cy + lung_ry * rng.random_range(-0.8..0.8);
                streaks.push((
                    x,
                    y,
                    rng.random_range(0.0..std::f32::consts::PI),
                    rng.random_range(0.06..0.14),
                ));
            }
            for side in [-1.0f32, 1.0] {
                blobs.push((cx + side * lung_dx * 0.6, cy - 0.02, 0.08, 0.18));
            }
        }
        _ => {}
    }

    // Streaks stay about a pixel wide however small the image.
    let streak_width = 0.012f32.max(0.9 / s);
    let mut img = GrayImage::new(size, size);
    for py in 0..size {
        for px in 0..size {
            let x = (px as f32 + 0.5) / s;
            let y = (py as f32 + 0.5) / s;
            // Air, then the body's soft tissue.
            let body = ellipse(x, y, cx, cy + 0.05, 0.42 * scale, 0.5 * scale);
            let mut v = 0.08 + 0.47 * smooth(body);
            // Lungs are darker (air-filled).
            let mut in_lung = 0.0f32;
            for side in [-1.0f32, 1.0] {
                let l = smooth(ellipse(x, y, cx + side * lung_dx, cy, lung_rx, lung_ry));
                in_lung = in_lung.max(l);
            }
            v -= 0.3 * in_lung;
            // Ribs: faint horizontal bands over the lungs.
            v += 0.05 * in_lung * (((y - cy) * 38.0 / scale).sin() * 0.5 + 0.5);
            // Spine and mediastinum.
            v += 0.3 * smooth(ellipse(x, y, cx, cy, 0.05 * scale, 0.45 * scale));
            for &(bx, by, r, k) in &blobs {
                let d2 = ((x - bx).powi(2) + (y - by).powi(2)) / (r * r);
                v += k * in_lung * (-d2).exp();
            }
            for &(sx, sy, a, len) in &streaks {
                let (dx, dy) = (x - sx, y - sy);
                let along = dx * a.cos() + dy * a.sin();
                let across = -dx * a.sin() + dy * a.cos();
                if along.abs() < len {
                    v += 0.22 * in_lung * (-(across / streak_width).powi(2)).exp();
                }
            }
            let n = rng.random_range(-1.0f32..1.0) + rng.random_range(-1.0f32..1.0);
            let v = (v * exposure + noise * n * 0.7).clamp(0.0, 1.0);
            img.put_pixel(px, py, Luma([(v * 255.0).round() as u8]));
        }
    }
    img
}

/// Normalised squared distance to an ellipse's centre (1 on its edge).
fn ellipse(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> f32 {
    ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2)
}

/// 1 inside (d < ~0.8), 0 outside (d > ~1.2), smooth in between.
fn smooth(d: f32) -> f32 {
    1.0 / (1.0 + ((d - 1.0) * 10.0).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_seeded_and_classes_differ() {
        let a = render(0, 32, 0.05, 1);
        assert_eq!(a, render(0, 32, 0.05, 1));
        assert_ne!(a, render(0, 32, 0.05, 2));
        let mean = |img: &GrayImage| img.pixels().map(|p| f64::from(p.0[0])).sum::<f64>();
        // Lesions brighten the lungs.
        assert!(mean(&render(0, 32, 0.0, 3)) > mean(&render(1, 32, 0.0, 3)));
    }

    #[test]
    fn skewed_counts() {
        let c = SynthConfig::skewed(32, 100, 5, 2, 0.6, 0);
        assert_eq!(c.train_per_class, [20, 20, 60]);
    }
}

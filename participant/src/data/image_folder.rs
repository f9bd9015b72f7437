//! One folder per class, PNG or JPEG files inside (the layout of the public
//! COVID-19 chest X-ray datasets: `train/Covid/*.png`, `test/Normal/*.png`).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};

use super::{DataError, DataRoot, Dataset};
use crate::model::InputShape;

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Colour handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMode {
    /// One channel (X-rays); colour images are converted.
    #[default]
    Gray,
    /// Three channels; grayscale images are replicated.
    Rgb,
}

impl ChannelMode {
    /// Number of channels.
    pub fn channels(self) -> usize {
        match self {
            ChannelMode::Gray => 1,
            ChannelMode::Rgb => 3,
        }
    }
}

/// How images are turned into tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    /// Class names in label order. `None` takes the sorted folder names of the
    /// split; give the list explicitly in federated jobs, because a site that
    /// lacks a class would otherwise number the others differently.
    pub classes: Option<Vec<String>>,
    /// Channels.
    pub channels: ChannelMode,
    /// Every image is resized to `size x size`.
    pub size: u32,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after that.
    pub std: Vec<f32>,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            classes: None,
            channels: ChannelMode::Gray,
            size: 64,
            mean: vec![0.5],
            std: vec![0.25],
        }
    }
}

impl ImageOptions {
    /// The chest X-ray classes of the public COVID-19 radiography datasets.
    pub fn chest_xray_classes() -> Vec<String> {
        ["Covid", "Normal", "Viral Pneumonia"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn check(&self) -> Result<(), DataError> {
        let c = self.channels.channels();
        if self.size == 0 || self.size > 4096 {
            return Err(DataError::Options(format!(
                "image size must be 1..=4096, got {}",
                self.size
            )));
        }
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != c {
                return Err(DataError::Options(format!(
                    "{name} needs 1 or {c} values, got {}",
                    v.len()
                )));
            }
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(DataError::Options("std values must be positive".into()));
        }
        Ok(())
    }
}

/// An image-folder split (e.g. `<root>/train`).
#[derive(Debug, Clone)]
pub struct ImageFolder {
    dir: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, i64)>,
    options: ImageOptions,
}

impl ImageFolder {
    /// Indexes `<root>/<split>/<class>/<image>`. Every image's header is read
    /// now, so an unreadable or mislabelled file fails here, by name, rather
    /// than in the middle of a round.
    pub fn open(root: &DataRoot, split: &str, options: ImageOptions) -> Result<Self, DataError> {
        options.check()?;
        let dir = root.resolve(split, "dataset split directory")?;
        if !dir.is_dir() {
            return Err(DataError::NotFound {
                what: "dataset split directory",
                path: dir,
            });
        }
        let mut folders: Vec<(String, PathBuf)> = Vec::new();
        for entry in read_dir_sorted(&dir)? {
            let name = file_name(&entry);
            if name.starts_with('.') {
                continue;
            }
            let resolved = canonical(root, &entry)?;
            if resolved.is_dir() {
                folders.push((name, resolved));
            } else {
                return Err(DataError::UnsupportedFile {
                    path: entry,
                    expected: "a class folder".into(),
                });
            }
        }
        if folders.is_empty() {
            return Err(DataError::Empty {
                path: dir,
                what: "class folders",
            });
        }
        let classes = match &options.classes {
            Some(c) => c.clone(),
            None => folders.iter().map(|(n, _)| n.clone()).collect(),
        };
        let mut samples = Vec::new();
        for (name, folder) in &folders {
            let label =
                classes
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| DataError::UnknownClass {
                        path: folder.clone(),
                        classes: classes.clone(),
                    })?;
            for file in read_dir_sorted(folder)? {
                let fname = file_name(&file);
                if fname.starts_with('.') {
                    continue;
                }
                let ext = file
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_default();
                if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                    return Err(DataError::UnsupportedFile {
                        path: file,
                        expected: IMAGE_EXTENSIONS.join(", "),
                    });
                }
                let file = canonical(root, &file)?;
                ImageReader::open(&file)
                    .map_err(|source| DataError::Io {
                        path: file.clone(),
                        source,
                    })?
                    .with_guessed_format()
                    .map_err(|source| DataError::Io {
                        path: file.clone(),
                        source,
                    })?
                    .into_dimensions()
                    .map_err(|source| DataError::Decode {
                        path: file.clone(),
                        source,
                    })?;
                samples.push((file, label as i64));
            }
        }
        if samples.is_empty() {
            return Err(DataError::Empty {
                path: dir,
                what: "images",
            });
        }
        Ok(Self {
            dir,
            classes,
            samples,
            options,
        })
    }

    /// The split directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Image files with their labels, in index order.
    pub fn samples(&self) -> &[(PathBuf, i64)] {
        &self.samples
    }

    /// Decodes, converts, resizes and normalises one image (channels first).
    pub fn decode(&self, path: &Path) -> Result<Vec<f32>, DataError> {
        let img = ImageReader::open(path)
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .with_guessed_format()
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .decode()
            .map_err(|source| DataError::Decode {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(to_chw(&img, &self.options))
    }
}

/// Pixels as normalised f32, channels first.
fn to_chw(img: &DynamicImage, o: &ImageOptions) -> Vec<f32> {
    let s = o.size;
    let c = o.channels.channels();
    let hw = (s as usize) * (s as usize);
    let mut out = vec![0f32; c * hw];
    let norm = |ch: usize, v: u8| {
        let m = o.mean.get(ch).or(o.mean.first()).copied().unwrap_or(0.0);
        let sd = o.std.get(ch).or(o.std.first()).copied().unwrap_or(1.0);
        (f32::from(v) / 255.0 - m) / sd
    };
    match o.channels {
        ChannelMode::Gray => {
            let g = img.to_luma8();
            let g = if g.dimensions() == (s, s) {
                g
            } else {
                image::imageops::resize(&g, s, s, FilterType::Triangle)
            };
            for (dst, px) in out.iter_mut().zip(g.pixels()) {
                *dst = norm(0, px.0[0]);
            }
        }
        ChannelMode::Rgb => {
            let rgb = img.to_rgb8();
            let rgb = if rgb.dimensions() == (s, s) {
                rgb
            } else {
                image::imageops::resize(&rgb, s, s, FilterType::Triangle)
            };
            for (i, px) in rgb.pixels().enumerate() {
                for ch in 0..3 {
                    out[ch * hw + i] = norm(ch, px.0[ch]);
                }
            }
        }
    }
    out
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn input_shape(&self) -> InputShape {
        InputShape::Image {
            channels: self.options.channels.channels() as i64,
            height: i64::from(self.options.size),
            width: i64::from(self.options.size),
        }
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn label(&self, index: usize) -> i64 {
        self.samples.get(index).map(|s| s.1).unwrap_or(-1)
    }

    fn load(&self, index: usize) -> Result<(Vec<f32>, i64), DataError> {
        let (path, label) = self
            .samples
            .get(index)
            .ok_or_else(|| DataError::Options(format!("sample index {index} out of range")))?;
        Ok((self.decode(path)?, *label))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn canonical(root: &DataRoot, p: &Path) -> Result<PathBuf, DataError> {
    let c = p.canonicalize().map_err(|source| DataError::Io {
        path: p.to_path_buf(),
        source,
    })?;
    root.contain(c, p)
}

/// Directory entries sorted by name, so indices (and thus seeded splits and
/// shuffles) do not depend on the file system's listing order.
fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut v = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    v.sort();
    Ok(v)
}

//! Local data: clear errors naming the file for missing or malformed
//! datasets, the data-root boundary, CSV tables, the prefetching loader.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use fedsky_participant::data::{
    CsvDataset, CsvOptions, DataError, DataRoot, Dataset, ImageFolder, ImageOptions, Loader,
};
use fedsky_participant::engine::{DataConfig, DataFormat, Engine, LocalData};
use fedsky_participant::model::{Architecture, ModelSpec};
use fedsky_participant::{FitParams, OptimizerKind, WireDtype};

fn open_err(root: &Path) -> String {
    let e = LocalData::open(&image_config(root, 16)).unwrap_err();
    // The full chain, as the binary prints it.
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[test]
fn missing_dataset_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("nowhere");
    let msg = open_err(&root);
    assert!(
        msg.contains("data root") && msg.contains("nowhere"),
        "{msg}"
    );
    std::fs::create_dir_all(tmp.path().join("site")).unwrap();
    let msg = open_err(&tmp.path().join("site"));
    assert!(
        msg.contains("dataset split directory") && msg.contains("train"),
        "{msg}"
    );
    std::fs::create_dir_all(tmp.path().join("site/train")).unwrap();
    let msg = open_err(&tmp.path().join("site"));
    assert!(
        msg.contains("no class folders") && msg.contains("train"),
        "{msg}"
    );
}

#[test]
fn malformed_images_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    synth_balanced(tmp.path(), 16, 2, 1, 0);
    let bad = tmp.path().join("train/Normal/broken.png");
    std::fs::write(&bad, b"this is not a PNG").unwrap();
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("broken.png") && msg.contains("malformed"),
        "{msg}"
    );
    std::fs::remove_file(&bad).unwrap();

    // A PNG whose header is fine but whose body is cut off fails when decoded.
    let good = std::fs::read(tmp.path().join("train/Covid/train-0-00000.png")).unwrap();
    let cut = tmp.path().join("train/Covid/truncated.png");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let root = DataRoot::new(tmp.path()).unwrap();
    let folder = ImageFolder::open(
        &root,
        "train",
        ImageOptions {
            size: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let idx = folder
        .samples()
        .iter()
        .position(|(p, _)| p.ends_with("truncated.png"))
        .unwrap();
    let err = folder.load(idx).unwrap_err();
    assert!(err.to_string().contains("truncated.png"), "{err}");
    // The loader hands the error to the training thread, file name included.
    let loader = Loader::new(Arc::new(folder), vec![idx], 4, false);
    let err = loader.epoch(0, 0).find_map(Result::err).unwrap();
    assert!(
        matches!(err, DataError::Decode { ref path, .. } if path.ends_with("truncated.png")),
        "{err}"
    );
    std::fs::remove_file(&cut).unwrap();

    std::fs::write(tmp.path().join("train/Covid/notes.txt"), b"hello").unwrap();
    let msg = open_err(tmp.path());
    assert!(msg.contains("notes.txt") && msg.contains("png"), "{msg}");
    std::fs::remove_file(tmp.path().join("train/Covid/notes.txt")).unwrap();

    std::fs::create_dir_all(tmp.path().join("train/Tuberculosis")).unwrap();
    let msg = open_err(tmp.path());
    assert!(
        msg.contains("Tuberculosis") && msg.contains("not one of the configured classes"),
        "{msg}"
    );
    std::fs::remove_dir(tmp.path().join("train/Tuberculosis")).unwrap();

    // Hidden files are ignored; the set opens again.
    std::fs::write(tmp.path().join("train/Covid/.DS_Store"), b"x").unwrap();
    let data = LocalData::open(&image_config(tmp.path(), 16)).unwrap();
    assert_eq!(data.train.len() + data.validation.len(), 6);
    assert_eq!(data.test.as_ref().map(Loader::len), Some(3));
}

#[cfg(unix)]
#[test]
fn nothing_outside_the_data_root_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    synth_balanced(&outside, 16, 1, 0, 0);
    let root = tmp.path().join("root");
    synth_balanced(&root, 16, 1, 0, 0);
    std::os::unix::fs::symlink(
        outside.join("train/Covid/train-0-00000.png"),
        root.join("train/Covid/escape.png"),
    )
    .unwrap();
    let msg = open_err(&root);
    assert!(
        msg.contains("escape.png") && msg.contains("outside the data root"),
        "{msg}"
    );
    let r = DataRoot::new(&root).unwrap();
    assert!(matches!(
        r.resolve("../outside", "x"),
        Err(DataError::OutsideRoot { .. })
    ));
}

#[test]
fn csv_tables_load_train_and_name_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    // Two separable classes in two features.
    let mut csv = String::from("x1,x2,label\n");
    for i in 0..60 {
        let (x, label) = if i % 2 == 0 {
            (1.0, "sick")
        } else {
            (-1.0, "healthy")
        };
        let j = f64::from(i) * 0.01;
        csv.push_str(&format!("{},{},{label}\n", x + j, -x - j));
    }
    std::fs::write(tmp.path().join("train.csv"), &csv).unwrap();
    let root = DataRoot::new(tmp.path()).unwrap();
    let ds = CsvDataset::open(&root, "train.csv", &CsvOptions::default()).unwrap();
    assert_eq!(ds.classes(), ["healthy", "sick"]);
    assert_eq!(ds.len(), 60);

    let config = DataConfig {
        root: tmp.path().to_path_buf(),
        format: DataFormat::Csv {
            train: "train.csv".into(),
            test: None,
            options: CsvOptions::default(),
        },
        val_fraction: 0.2,
        split_seed: 1,
    };
    let data = LocalData::open(&config).unwrap();
    let spec = ModelSpec {
        arch: Architecture::Mlp { hidden: 8 },
        input: data.train.dataset().input_shape(),
        num_classes: 2,
    };
    let _g = torch_lock();
    let mut e = Engine::new(&spec, tch::Device::Cpu, data, cpu_options()).unwrap();
    let global = e.initial_model(WireDtype::F32).unwrap();
    let p = FitParams {
        epochs: 20,
        batch_size: 8,
        learning_rate: 0.05,
        proximal_mu: 0.0,
        seed: 0,
        optimizer: OptimizerKind::Adam,
    };
    let out = e.fit(&global, &p).unwrap();
    let eval = e.evaluate(&out.bytes).unwrap();
    assert_eq!(eval.examples, 12, "validation hold-out");
    assert!(eval.accuracy > 0.9, "{}", eval.accuracy);

    std::fs::write(tmp.path().join("bad.csv"), "x1,x2,label\n1,2,a\n3,oops,b\n").unwrap();
    let err = CsvDataset::open(&root, "bad.csv", &CsvOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.csv") && msg.contains("line 3") && msg.contains("oops"),
        "{msg}"
    );
    std::fs::write(tmp.path().join("nolabel.csv"), "x1,x2\n1,2\n").unwrap();
    let msg = CsvDataset::open(&root, "nolabel.csv", &CsvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("nolabel.csv") && msg.contains("no label column"),
        "{msg}"
    );
    let msg = CsvDataset::open(&root, "missing.csv", &CsvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("missing.csv") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn loader_covers_every_sample_once_in_a_seeded_order() {
    let root = DataRoot::new(shared_dataset()).unwrap();
    let folder = ImageFolder::open(
        &root,
        "train",
        ImageOptions {
            size: 32,
            classes: Some(classes()),
            ..Default::default()
        },
    )
    .unwrap();
    let n = folder.len();
    let ds: Arc<dyn Dataset> = Arc::new(folder);
    let loader = Loader::new(ds.clone(), (0..n).collect(), 16, true).with_prefetch(2);
    let labels = |seed, epoch| -> Vec<i64> {
        loader
            .epoch(seed, epoch)
            .flat_map(|b| b.unwrap().ys)
            .collect()
    };
    let a = labels(1, 0);
    assert_eq!(a.len(), n);
    assert_eq!(a, labels(1, 0), "same seed and epoch");
    assert_ne!(a, labels(1, 1), "another epoch");
    let mut sorted = loader.epoch_order(1, 0);
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    // Batches have the declared shape; the last one is partial.
    let batches: Vec<_> = loader.epoch(3, 0).map(Result::unwrap).collect();
    assert_eq!(batches.len(), n.div_ceil(16));
    assert!(batches.iter().all(|b| b.xs.len() == b.len() * 32 * 32));
    // Stopping early does not hang the worker.
    let mut it = loader.epoch(4, 0);
    assert!(it.next().is_some());
    drop(it);
}

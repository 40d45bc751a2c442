//! Training on a tiny synthetic ImageFolder: loss falls, snapshots and the
//! manifest are written, resume continues, same seed gives the same weights.

use std::path::{Path, PathBuf};
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::net::Arch;
use zfvis_core::tch::{Device, Tensor};
use zfvis_core::train::{self, Schedule, TrainConfig};
use zfvis_dev::testing::tempdir;

/// Two classes told apart by colour: reddish vs bluish, noisy, 64x48 images.
fn dataset(root: &Path, per_class: usize) {
    let mut seed = 1u32;
    let mut rnd = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 24) as u8
    };
    for (split, n) in [("train", per_class), ("val", 6)] {
        for (c, name) in ["n001", "n002"].iter().enumerate() {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(64, 48, |_, _| {
                    let (a, b) = (rnd() / 2, rnd() / 4);
                    if c == 0 {
                        image::Rgb([128 + a, b, b])
                    } else {
                        image::Rgb([b, b, 128 + a])
                    }
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    std::fs::write(
        dir_file(root),
        r#"[{"index":0,"wnid":"n001","name":"red"},{"index":1,"wnid":"n002","name":"blue"}]"#,
    )
    .unwrap();
    // An unreadable file is skipped, not fatal.
    std::fs::write(root.join("train/n001/broken.jpg"), b"not a jpeg").unwrap();
}

fn dir_file(root: &Path) -> PathBuf {
    root.join("classes.json")
}

fn read_sorted(p: PathBuf) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(p).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn cfg(data: &Path, out: &Path, epochs: u32) -> TrainConfig {
    TrainConfig {
        arch: Arch::Zfnet,
        width: 0.05,
        fc_width: Some(0.01),
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        epochs,
        snapshots: vec![1, 2, 4],
        batch: 8,
        lr: 0.02,
        momentum: 0.9,
        weight_decay: 5e-4,
        clip: true,
        schedule: Schedule::Modern,
        device: Device::Cpu,
        resume: false,
        seed: 3,
        half: false,
        cache_bytes: 1 << 30,
        provenance: serde_json::json!({"command": "test"}),
        limit: 0,
        stop_after: None,
        classes: vec![],
    }
}

#[test]
fn loss_falls_snapshots_resume_and_determinism() {
    let root = tempdir("all");
    let data = root.join("data");
    dataset(&data, 24);

    // Uninterrupted: 4 epochs.
    let full = root.join("full");
    let r = train::train(&cfg(&data, &full, 4)).unwrap();
    assert_eq!(r.skipped, 1, "the broken file is skipped and counted");
    let m = ModelDir::open(&full).unwrap();
    let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
    assert_eq!(epochs, vec![1, 2, 4]);
    assert!(
        full.join("epoch-001.safetensors").exists() && full.join("epoch-004.safetensors").exists()
    );
    assert!(!full.join("epoch-003.safetensors").exists());
    let loss = |e: u32| {
        m.manifest
            .snapshots
            .iter()
            .find(|s| s.epoch == e)
            .unwrap()
            .metrics
            .train_loss
            .unwrap()
    };
    assert!(loss(4) < loss(1), "loss falls: {} -> {}", loss(1), loss(4));
    assert_eq!(m.manifest.classes[1].name, "blue");
    assert_eq!(m.manifest.training.as_ref().unwrap()["epochs_done"], 4);
    assert!(
        !full.join("last.safetensors").exists(),
        "the resume file is removed when done"
    );

    // Same seed, same data, same device: same weights.
    let again = root.join("again");
    train::train(&cfg(&data, &again, 4)).unwrap();
    let a = read_sorted(full.join("epoch-004.safetensors"));
    let b = read_sorted(again.join("epoch-004.safetensors"));
    for ((na, ta), (nb, tb)) in a.iter().zip(b.iter()) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs between identical runs");
    }

    // Interrupted after 2 epochs (as if killed), then resumed to 4.
    let part = root.join("part");
    let mut c = cfg(&data, &part, 4);
    c.stop_after = Some(2);
    train::train(&c).unwrap();
    assert!(part.join("last.safetensors").exists() && part.join("train-state.json").exists());
    // A second run without --resume refuses to overwrite.
    let e = train::train(&cfg(&data, &part, 4))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--resume"), "{e}");
    let mut c = cfg(&data, &part, 4);
    c.resume = true;
    train::train(&c).unwrap();
    let m = ModelDir::open(&part).unwrap();
    let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
    assert_eq!(epochs, vec![1, 2, 4]);
    let w = |e: u32| {
        m.manifest
            .snapshots
            .iter()
            .find(|s| s.epoch == e)
            .unwrap()
            .metrics
            .wall_seconds
            .unwrap()
    };
    assert!(w(4) > w(2), "wall time continues");
    // The first two epochs are the uninterrupted run's own.
    let a = read_sorted(full.join("epoch-002.safetensors"));
    let b = read_sorted(part.join("epoch-002.safetensors"));
    assert!(a.iter().zip(b.iter()).all(|((_, x), (_, y))| x.equal(y)));

    // eval reads the snapshot and the val folder.
    let r = train::eval(&m, Some(4), &data, Device::Cpu).unwrap();
    assert_eq!(r.n, 12);
    // Its top-1 is what an independent count finds (each val image through
    // the model's own pipeline, argmax against its folder's class), and the
    // val_top1 recorded when epoch 4 was written is the same number.
    let net = m.load(Some(4), Device::Cpu).unwrap();
    let pre = m.manifest.preprocess();
    let mut right = 0;
    for (c, id) in ["n001", "n002"].iter().enumerate() {
        for i in 0..6 {
            let f = data.join("val").join(id).join(format!("{i}.png"));
            let img = zfvis_core::preprocess::decode(&std::fs::read(f).unwrap()).unwrap();
            let x = pre.tensor(&pre.crop(&img)).unsqueeze(0);
            let k = net.trace(&x).probs().argmax(-1, false).int64_value(&[0]);
            right += (k == c as i64) as usize;
        }
    }
    assert_eq!(
        r.top1,
        right as f64 / 12.0,
        "eval's top-1 against a recount"
    );
    let recorded = m.manifest.snapshots.iter().find(|s| s.epoch == 4).unwrap();
    assert_eq!(
        recorded.metrics.val_top1,
        Some(r.top1),
        "val_top1 of epoch 4"
    );
    // A corrupt snapshot fails with a clear message.
    std::fs::write(part.join("epoch-004.safetensors"), b"junk").unwrap();
    let e = train::eval(&m, Some(4), &data, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("epoch-004.safetensors") && e.contains("not a readable safetensors file"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn topk_hits_by_hand() {
    let logits = Tensor::from_slice(&[
        0.1f32, 0.9, 0.0, 0.0, 0.0, 0.0, // label 1: top-1 hit
        0.5, 0.4, 0.3, 0.2, 0.1, 0.0, // label 4: 5th best -> top-5 hit only
        0.5, 0.4, 0.3, 0.2, 0.1, 0.0, // label 5: last -> no hit
    ])
    .view([3, 6]);
    let labels = Tensor::from_slice(&[1i64, 4, 5]);
    assert_eq!(train::topk_hits(&logits, &labels), (1, 2));
}

#[test]
fn class_filter_keeps_named_classes_in_sorted_order() {
    use zfvis_core::data;
    let root = tempdir("classes");
    for id in ["n003", "n001", "n002"] {
        std::fs::create_dir_all(root.join("train").join(id)).unwrap();
    }
    std::fs::write(
        dir_file(&root),
        r#"[{"index":0,"wnid":"n001","name":"red"},{"index":1,"wnid":"n002","name":"blue"}]"#,
    )
    .unwrap();
    let all = data::classes(&root).unwrap();
    // By id or by name, any order, case-insensitive: re-indexed in sorted id order.
    let picked = data::select_classes(all.clone(), &["n003".into(), "RED".into()]).unwrap();
    let got: Vec<(usize, &str)> = picked.iter().map(|c| (c.index, c.id.as_str())).collect();
    assert_eq!(got, vec![(0, "n001"), (1, "n003")]);
    // A class-list file, with a comment line.
    let list = root.join("list.txt");
    std::fs::write(&list, "# two\nn002\n\nn003\n").unwrap();
    let picked = data::select_classes(all.clone(), &[list.to_string_lossy().into()]).unwrap();
    assert_eq!(
        picked.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["n002", "n003"]
    );
    assert_eq!(picked[1].index, 1);
    // Unknown names are an error naming the class; no filter keeps all.
    let e = data::select_classes(all.clone(), &["n009".into()]).unwrap_err();
    assert!(e.to_string().contains("n009"), "{e}");
    assert_eq!(data::select_classes(all, &[]).unwrap().len(), 3);
}

//! The dataset index equals a brute-force scan, and grows incrementally.

use std::path::Path;
use zfvis_core::checkpoint::{self, ClassInfo, ModelDir};
use zfvis_core::index;
use zfvis_core::net::{Arch, NetSpec};
use zfvis_core::preprocess;
use zfvis_core::tch::{Device, Tensor};

fn write_images(dir: &Path, from: usize, to: usize) {
    for i in from..to {
        let sub = dir.join(if i % 2 == 0 { "a" } else { "b/c" });
        std::fs::create_dir_all(&sub).unwrap();
        let mut s = (i as u32 + 1) * 2_654_435_761;
        let img = image::RgbImage::from_fn(90 + i as u32 * 7, 80, |_, _| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            image::Rgb([(s >> 24) as u8, (s >> 16) as u8, (s >> 8) as u8])
        });
        img.save(sub.join(format!("img{i:02}.png"))).unwrap();
    }
}

#[test]
fn index_equals_brute_force_and_is_incremental() {
    let root = std::env::temp_dir().join(format!("zfvis-index-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let spec = NetSpec::preset(Arch::Zfnet, 0.1, 0.02, 3);
    let classes = (0..3)
        .map(|i| ClassInfo {
            index: i,
            id: format!("c{i}"),
            name: format!("c{i}"),
        })
        .collect();
    let model: ModelDir =
        checkpoint::create_random(&root.join("m"), &spec, classes, &[1, 2], 9).unwrap();
    let net = model.load(Some(2), Device::Cpu).unwrap();
    let ds = root.join("ds");
    write_images(&ds, 0, 7);
    std::fs::write(ds.join("a/broken.jpg"), b"nope").unwrap();
    // The server's reader: nothing before the first build, then each file
    // version parsed once.
    let ix = zfvis_core::engine::indexer::Indexer::spawn(
        root.clone(),
        ds.clone(),
        Device::Cpu,
        Default::default(),
    );
    assert!(ix.load(&model, 2).unwrap().is_none());
    let (_, n) = index::build(&net, &model, 2, &ds, 3, &|_, _| {}).unwrap();
    assert_eq!(n, 8);
    let first = ix.load(&model, 2).unwrap().unwrap();
    assert_eq!(first.images.len(), 7);
    assert!(std::sync::Arc::ptr_eq(
        &first,
        &ix.load(&model, 2).unwrap().unwrap()
    ));
    write_images(&ds, 7, 13);
    let (idx, n) = index::build(&net, &model, 2, &ds, 4, &|_, _| {}).unwrap();
    assert_eq!(n, 6, "only the new images are read");
    assert_eq!(idx.images.len(), 13);
    let second = ix.load(&model, 2).unwrap().unwrap();
    assert_eq!(second.images, idx.images, "the rebuilt file is read again");
    assert_eq!(second.layers, idx.layers);
    assert!(idx.skipped.contains("a/broken.jpg"));
    let (_, n) = index::build(&net, &model, 2, &ds, 4, &|_, _| {}).unwrap();
    assert_eq!(n, 0);

    // Brute force: every image alone, every map's maximum.
    let mut all: Vec<(String, Vec<Tensor>)> = vec![];
    for p in zfvis_core::data::list_images(&ds).unwrap() {
        let bytes = std::fs::read(&p).unwrap();
        let Ok(img) = preprocess::decode(&bytes) else {
            continue;
        };
        let x = preprocess::to_tensor(
            &preprocess::model_crop(&img, 224),
            &model.manifest.mean,
            &model.manifest.std,
        );
        let t = net.trace(&x.unsqueeze(0));
        let name = p
            .strip_prefix(ds.canonicalize().unwrap())
            .or_else(|_| p.strip_prefix(&ds))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        all.push((name, t.maps.iter().map(|m| m.get(0)).collect()));
    }
    assert_eq!(all.len(), 13);
    for layer in 1..=5usize {
        let maps = all[0].1[layer - 1].size()[0];
        for map in 0..maps {
            let mut scores: Vec<(f64, i64, String)> = all
                .iter()
                .map(|(n, ms)| {
                    let m = ms[layer - 1].get(map);
                    let w = m.size()[1];
                    let flat = m.reshape([-1]);
                    let i = flat.argmax(0, false).int64_value(&[]);
                    (flat.double_value(&[i]), i / w * 1000 + i % w, n.clone())
                })
                .collect();
            scores.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.2.cmp(&b.2)));
            let got = index::top9(&idx, layer, map).unwrap();
            assert_eq!(got.len(), 9);
            for (g, s) in got.iter().zip(&scores) {
                assert!(
                    (g.value - s.0).abs() < 1e-4,
                    "layer {layer} map {map}: {} vs {}",
                    g.value,
                    s.0
                );
                if s.0 > 0.0 {
                    assert_eq!(g.image, s.2, "layer {layer} map {map}");
                    assert_eq!(g.y * 1000 + g.x, s.1, "layer {layer} map {map} position");
                }
            }
        }
    }
    assert!(index::top9(&idx, 6, 0).is_err());
    assert!(index::top9(&idx, 1, 10)
        .unwrap_err()
        .to_string()
        .contains("map 10 is out of range"));
    assert!(index::resolve(&ds, "../etc/passwd").is_err());
    let _ = std::fs::remove_dir_all(&root);
}

/// A top 9 over a small dataset may end in images the map is silent on
/// (activation 0): the views leave them out.
#[test]
fn silent_entries_are_left_out() {
    let e = |value: f64| index::Entry {
        image: format!("{value}.jpg"),
        value,
        y: 0,
        x: 0,
    };
    let top = [e(2.5), e(0.25), e(0.0), e(0.0)];
    let r = index::responding(&top);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].image, "0.25.jpg");
    assert!(index::responding(&[e(0.0)]).is_empty());
}

//! Correspondence: the pair distance on a hand-worked example, reproducible
//! random squares that never overlap the named parts, and a full run.

use std::collections::BTreeMap;
use zfvis_core::correspondence::{self, CorrImage, CorrespondenceRequest};
use zfvis_core::net::{Arch, Init, Net, NetSpec};
use zfvis_core::tch::{self, Device, Kind, Tensor};

#[test]
fn pair_distance_by_hand() {
    let a = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 1.0]);
    let b = Tensor::from_slice(&[1.0f32, 1.0, -1.0, -1.0]);
    let c = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 1.0]);
    assert_eq!(correspondence::sign_distance(&a, &b), 0.5);
    assert_eq!(correspondence::sign_distance(&a, &c), 0.0);
    // Pairs: (a,b) 0.5, (a,c) 0, (b,c) 0.5 -> mean 1/3, std sqrt(((1/6)^2*2 + (1/3)^2)/3) = sqrt(2)/6.
    let s = correspondence::pair_stats(&[a, b, c]);
    assert!((s.mean - 1.0 / 3.0).abs() < 1e-12);
    assert!((s.std - 2f64.sqrt() / 6.0).abs() < 1e-12, "{}", s.std);
}

#[test]
fn squares_are_centred_and_clipped() {
    assert_eq!(correspondence::square_at((100.0, 50.0), 24, 224), (88, 38));
    assert_eq!(correspondence::square_at((5.0, 220.0), 24, 224), (0, 200));
    assert_eq!(correspondence::square_at((100.7, 50.2), 25, 224), (88, 38));
}

#[test]
fn random_squares_are_reproducible_and_avoid_the_parts() {
    let avoid = [(88, 38), (120, 40), (100, 90)];
    for seed in 0..200u64 {
        for i in 0..5 {
            let q = correspondence::random_square(seed, i, &avoid, 24, 224).unwrap();
            assert_eq!(
                q,
                correspondence::random_square(seed, i, &avoid, 24, 224).unwrap()
            );
            for a in avoid {
                let overlap = q.0 < a.0 + 24 && a.0 < q.0 + 24 && q.1 < a.1 + 24 && a.1 < q.1 + 24;
                assert!(!overlap, "seed {seed}: {q:?} overlaps {a:?}");
            }
            assert!(q.0 >= 0 && q.1 >= 0 && q.0 + 24 <= 224 && q.1 + 24 <= 224);
        }
    }
    let a = correspondence::random_square(1, 0, &avoid, 24, 224).unwrap();
    let b = correspondence::random_square(2, 0, &avoid, 24, 224).unwrap();
    let c = correspondence::random_square(1, 1, &avoid, 24, 224).unwrap();
    assert!(a != b || a != c, "seed and image index matter");
}

#[test]
fn full_run_matches_a_direct_computation() {
    tch::manual_seed(3);
    let spec = NetSpec::preset(Arch::Zfnet, 0.1, 0.05, 4);
    let mut net = Net::new(spec, Device::Cpu).unwrap();
    net.init(Init::Kaiming);
    let images: Vec<CorrImage> = (0..3)
        .map(|i| CorrImage {
            label: format!("img{i}"),
            input: Tensor::randn([3, 224, 224], (Kind::Float, Device::Cpu)),
            parts: BTreeMap::from([
                ("eye".to_string(), (60.0 + i as f64, 80.0)),
                ("nose".to_string(), (150.0, 150.0)),
            ]),
        })
        .collect();
    let r =
        correspondence::correspondence(&net, &images, &CorrespondenceRequest { size: 24, seed: 7 })
            .unwrap();
    assert_eq!(r.pairs, 3);
    assert_eq!(
        r.parts.keys().cloned().collect::<Vec<_>>(),
        vec!["eye", "nose", "random"]
    );
    // Recompute "eye" at layer 7 by hand.
    let signs: Vec<Tensor> = images
        .iter()
        .map(|im| {
            let (x0, y0) = correspondence::square_at(im.parts["eye"], 24, 224);
            let x = im.input.unsqueeze(0);
            let xo = zfvis_core::occlusion::occluded(&x, y0, x0, 24);
            (net.trace(&x).last_hidden().get(0) - net.trace(&xo).last_hidden().get(0)).sign()
        })
        .collect();
    let d: Vec<f64> = [(0, 1), (0, 2), (1, 2)]
        .iter()
        .map(|&(i, j)| correspondence::sign_distance(&signs[i], &signs[j]))
        .collect();
    let mean = d.iter().sum::<f64>() / 3.0;
    assert!((r.parts["eye"].layer7.mean - mean).abs() < 1e-9);
    assert!(r.parts["random"].layer5.mean >= 0.0 && r.parts["random"].layer5.mean <= 1.0);
    // conv5 units the square cannot reach keep ε = 0 exactly: a 24 px square
    // cannot change all 13x13 positions of every map.
    let x = images[0].input.unsqueeze(0);
    let xo = zfvis_core::occlusion::occluded(&x, 0, 0, 24);
    let e5 = net.trace(&x).maps[4].get(0) - net.trace(&xo).maps[4].get(0);
    assert!(e5.eq(0.0).any().int64_value(&[]) == 1);
    let again =
        correspondence::correspondence(&net, &images, &CorrespondenceRequest { size: 24, seed: 7 })
            .unwrap();
    assert_eq!(
        again.images[1].squares["random"],
        r.images[1].squares["random"]
    );
    let e = correspondence::correspondence(
        &net,
        &images[..1],
        &CorrespondenceRequest { size: 24, seed: 7 },
    )
    .unwrap_err();
    assert!(e.to_string().contains("2 to 10 images"));
}

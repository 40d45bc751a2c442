//! The CAM family against the grad-cam package (pytorch-grad-cam 1.5.7,
//! tests/cam_ref.py) and SmoothGrad against Captum's NoiseTunnel fed the
//! same noise: on the bundled ZFNet and imported torchvision VGG16 and
//! ResNet-50 (random weights), at each network's suggested unit.

mod common;

use common::{bundled_zfnet, cosine, imported_at, open, rel_l2};
use std::path::Path;
use zfvis_core::explain::{Explainer, Options, Target};
use zfvis_core::methods::{self, smooth, Method, Smooth};
use zfvis_core::tch::{Kind, Tensor};
use zfvis_dev::testing::{python, tempdir};

/// Every CAM method, as the package names them (cam_ref.py's names).
const CAMS: [Method; 8] = [
    methods::GRADCAM,
    methods::GRADCAM_PP,
    methods::XGRADCAM,
    methods::HIRESCAM,
    methods::LAYERCAM,
    methods::EIGENCAM,
    methods::ABLATIONCAM,
    methods::SCORECAM,
];

/// The package's normalisation (`scale_cam_image`): x − min, / (1e-7 + max).
fn scaled(t: &Tensor) -> Tensor {
    let t = t.to_kind(Kind::Double);
    let t = &t - t.min();
    &t / (t.max() + 1e-7)
}

/// Every CAM method's map at the suggested unit (`unit`: its number and the
/// package's module for it) equals the package's: cosine >= 0.999 and
/// relative L2 error <= 1e-3, both normalised as the package normalises.
fn cams_match_the_package(tag: &str, model_dir: &Path, reference: &[&str], unit: (usize, &str)) {
    let (net, x) = open(model_dir);
    let dir = tempdir(&format!("{tag}-cams"));
    let xp = dir.join("x.npy");
    x.write_npy(&xp).unwrap();
    let names: Vec<&str> = CAMS.iter().map(|m| m.name()).collect();
    let names = names.join(",");
    let mut args = vec!["cams"];
    args.extend_from_slice(reference);
    args.extend([xp.to_str().unwrap(), dir.to_str().unwrap(), unit.1, &names]);
    python("cam_ref.py", &args);
    let class: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("class.json")).unwrap()).unwrap();
    let e = Explainer::new(&net, &x);
    let cls = e.top_class();
    assert_eq!(class["class"].as_i64(), Some(cls), "{tag}: top class");
    let o = Options::new(&net);
    assert_eq!(o.cam_layer, unit.0, "{tag}: the suggested unit");
    for m in CAMS {
        let ours = m.map(&e, Target::Class(cls), &o).unwrap();
        let theirs = Tensor::read_npy(dir.join(format!("{}.npy", m.name()))).unwrap();
        assert_eq!(ours.size(), theirs.size(), "{tag} {m}: shape");
        let (a, b) = (scaled(&ours), scaled(&theirs));
        let (cos, rel) = (cosine(&a, &b), rel_l2(&a, &b));
        eprintln!("{tag} {m}: cosine {cos:.7}, relative L2 {rel:.2e}");
        assert!(
            cos >= 0.999 && rel <= 1e-3,
            "{tag} {m}: cosine {cos}, relative L2 {rel}"
        );
    }
}

/// The number of the unit named `name` in the model at `dir`.
fn unit_of(dir: &Path, name: &str) -> usize {
    let spec = zfvis_core::checkpoint::ModelDir::open(dir)
        .unwrap()
        .manifest
        .spec()
        .unwrap();
    spec.find_unit(name).unwrap()
}

#[test]
fn bundled_zfnet_cams_match_the_grad_cam_package() {
    let (dir, snap) = bundled_zfnet();
    let reference = ["zfnet", dir.to_str().unwrap(), snap.to_str().unwrap()];
    cams_match_the_package("zfnet", &dir, &reference, (5, "5"));
}

/// VGG16 at 80 px (its last conv's maps 5×5; 512 masked passes for
/// Score-CAM on both sides), to keep the test near a minute.
#[test]
fn imported_vgg16_cams_match_the_grad_cam_package() {
    let (dir, pth) = imported_at("vgg16", Some(80));
    let reference = ["torchvision:vgg16", pth.to_str().unwrap()];
    // VGG's last conv (conv 13, its ReLU `features.29`).
    assert_eq!(unit_of(&dir, "features.28"), 13);
    cams_match_the_package("vgg16", &dir, &reference, (13, "features.29"));
}

/// ResNet-50 at 80 px (layer4's maps 3×3; 2,048 masked passes for Score-CAM).
#[test]
fn imported_resnet50_cams_match_the_grad_cam_package() {
    let (dir, pth) = imported_at("resnet50", Some(80));
    let reference = ["torchvision:resnet50", pth.to_str().unwrap()];
    let k = unit_of(&dir, "layer4.2");
    cams_match_the_package("resnet50", &dir, &reference, (k, "layer4.2"));
}

/// SmoothGrad and SmoothGrad² equal Captum's NoiseTunnel over the same
/// method when its torch.normal draws our noise (written to a file), to 1e-5.
#[test]
fn smoothgrad_matches_captums_noise_tunnel() {
    let (dir, snap) = bundled_zfnet();
    let (net, x) = open(&dir);
    let tmp = tempdir("smoothgrad");
    let xp = tmp.join("x.npy");
    x.write_npy(&xp).unwrap();
    let e = Explainer::new(&net, &x);
    let cls = e.top_class();
    for (m, squared) in [
        (methods::GRADIENT, false),
        (methods::GRADIENT, true),
        (methods::GUIDED, false),
    ] {
        let s = Smooth {
            samples: 8,
            noise: 0.15,
            seed: 7,
            squared,
        };
        let mut o = Options::new(&net);
        o.smooth = Some(s);
        let ours = m.map(&e, Target::Class(cls), &o).unwrap();
        let eps = smooth::noise(&x.size()[1..], s.samples, s.seed);
        let np = tmp.join("noise.npy");
        eps.write_npy(&np).unwrap();
        let sigma = smooth::sigma(&e.x, &s).to_string();
        let out = tmp.join(format!("{m}-{squared}.npy"));
        python(
            "cam_ref.py",
            &[
                "smooth",
                "zfnet",
                dir.to_str().unwrap(),
                snap.to_str().unwrap(),
                xp.to_str().unwrap(),
                np.to_str().unwrap(),
                &sigma,
                out.to_str().unwrap(),
                m.name(),
                if squared { "1" } else { "0" },
            ],
        );
        let theirs = Tensor::read_npy(&out).unwrap();
        let rel = rel_l2(&ours, &theirs);
        eprintln!(
            "SmoothGrad{} {m}: relative L2 {rel:.2e}",
            if squared { "²" } else { "" }
        );
        assert!(rel <= 1e-5, "{m} squared={squared}: relative L2 {rel}");
        // The mean of a single map is the map: the noise is what differs.
        let alone = m.map(&e, Target::Class(cls), &Options::new(&net)).unwrap();
        assert!(
            rel_l2(&alone, &theirs) > 1e-2,
            "{m}: the noise changed nothing"
        );
    }
}

/// The noise is the seed's: the same numbers for the same seed, others for another.
#[test]
fn smoothgrad_noise_is_seeded() {
    let a = smooth::noise(&[3, 4, 4], 2, 1);
    let b = smooth::noise(&[3, 4, 4], 2, 1);
    let c = smooth::noise(&[3, 4, 4], 2, 2);
    assert_eq!(a.size(), [2, 3, 4, 4]);
    assert!(a.equal(&b));
    assert!(!a.equal(&c));
    let v = smooth::noise(&[100_000], 1, 3);
    let (mean, std) = (
        v.mean(Kind::Double).double_value(&[]),
        v.std(true).double_value(&[]),
    );
    assert!(
        mean.abs() < 0.02 && (std - 1.0).abs() < 0.02,
        "mean {mean}, std {std}"
    );
}

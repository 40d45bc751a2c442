//! The deconvnet and forward pass against independent computations:
//! adjointness, receptive fields, and PyTorch in the same venv.

use std::path::PathBuf;
use std::process::Command;
use zfvis_core::checkpoint;
use zfvis_core::deconv::{self, Keep, ProjectRequest};
use zfvis_core::net::{Arch, Init, Net, NetSpec};
use zfvis_core::tch::{self, Device, Kind, Tensor};
use zfvis_dev::testing::venv_python;

fn random_net(arch: Arch, width: f64, seed: i64) -> Net {
    tch::manual_seed(seed);
    let spec = NetSpec::preset(arch, width, 0.02, 7);
    let mut net = Net::new(spec, Device::Cpu).unwrap();
    net.init(Init::Kaiming);
    tch::no_grad(|| {
        for (name, mut t) in net.vs.variables() {
            if name.ends_with(".bias") {
                let _ = t.uniform_(-0.05, 0.05);
            }
        }
    });
    net
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) * b.to_kind(Kind::Double))
        .sum(Kind::Double)
        .double_value(&[])
}

#[test]
fn shapes_per_layer_at_224() {
    let net = random_net(Arch::Zfnet, 0.1, 1);
    let t = net.trace(&Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu)));
    let hw: Vec<i64> = t.maps.iter().map(|m| m.size()[2]).collect();
    assert_eq!(hw, vec![110, 26, 13, 13, 13]);
    let pooled: Vec<i64> = t.switches.iter().flatten().map(|s| s.size()[2]).collect();
    assert_eq!(pooled, vec![55, 13, 6]);
    assert_eq!(t.logits.size(), vec![2, 7]);
}

#[test]
fn deconv_is_the_adjoint_of_conv() {
    for arch in [Arch::Zfnet, Arch::Alexnet] {
        let net = random_net(arch, 0.1, 2);
        for l in 0..5 {
            let b = &net.convs[l];
            let n_in = b.in_side;
            let x = Tensor::randn([1, b.in_c, n_in, n_in], (Kind::Float, Device::Cpu));
            let fx = x.conv2d(
                net.conv_weight(l),
                None::<Tensor>,
                [b.window.stride; 2],
                [b.window.pad; 2],
                [1, 1],
                1,
            );
            let y = Tensor::randn(fx.size(), (Kind::Float, Device::Cpu));
            let aty = deconv::deconv_step(&net, b.index, &y, n_in);
            assert_eq!(aty.size(), x.size());
            let (lhs, rhs) = (dot(&fx, &y), dot(&x, &aty));
            assert!(
                (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0),
                "{arch} conv{}: {lhs} vs {rhs}",
                l + 1
            );
        }
    }
}

#[test]
fn unpool_is_the_adjoint_of_pool_with_overlapping_windows() {
    let x = Tensor::randn([2, 4, 26, 26], (Kind::Float, Device::Cpu));
    let (px, idx) = x.max_pool2d_with_indices([3, 3], [2, 2], [1, 1], [1, 1], false);
    let y = Tensor::randn(px.size(), (Kind::Float, Device::Cpu));
    let up = deconv::unpool(&y, &idx, (26, 26));
    let (lhs, rhs) = (dot(&px, &y), dot(&x, &up));
    assert!(
        (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
    // Against libtorch's own max-pool backward.
    let xg = x.set_requires_grad(true);
    let (p2, _) = xg.max_pool2d_with_indices([3, 3], [2, 2], [1, 1], [1, 1], false);
    let g = Tensor::run_backward(&[(p2 * &y).sum(Kind::Float)], &[&xg], false, false).remove(0);
    assert!(g.allclose(&up, 1e-6, 1e-6, false));
}

#[test]
fn unpool_sums_coinciding_switches() {
    // A single peak in the middle of a 3x3 image is the max of all four
    // overlapping 3x3/stride-2/pad-1 windows: its unpooled value is their sum.
    let x = Tensor::zeros([1, 1, 3, 3], (Kind::Float, Device::Cpu)) - 1.0;
    let _ = x.get(0).get(0).get(1).get(1).fill_(5.0);
    let (p, idx) = x.max_pool2d_with_indices([3, 3], [2, 2], [1, 1], [1, 1], false);
    assert_eq!(p.size(), vec![1, 1, 2, 2]);
    let y = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 1, 2, 2]);
    let up = deconv::unpool(&y, &idx, (3, 3));
    assert_eq!(up.double_value(&[0, 0, 1, 1]), 10.0);
    assert_eq!(up.abs().sum(Kind::Float).double_value(&[]), 10.0);
}

#[test]
fn projection_stays_inside_the_receptive_field() {
    for arch in [Arch::Zfnet, Arch::Alexnet] {
        let net = random_net(arch, 0.1, 3);
        let x = Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu));
        let trace = net.trace(&x);
        for layer in 1..=5usize {
            let size = net.convs[layer - 1].side;
            // A unit near the middle and one at the border.
            for (y, x) in [(size / 2, size / 2 - 1), (0, size - 1)] {
                let mut p = None;
                // Find a map whose projection is not all zero (ReLU may kill some).
                for map in 0..net.convs[layer - 1].out_c {
                    let r = deconv::project(
                        &net,
                        &trace,
                        &[ProjectRequest {
                            layer,
                            map,
                            keep: Keep::At(y, x),
                        }],
                    )
                    .unwrap()
                    .remove(0);
                    if r.pixels.abs().max().double_value(&[]) > 0.0 {
                        p = Some(r);
                        break;
                    }
                }
                let p = p.expect("some projection is non-zero");
                let (y0, x0, y1, x1) = net.spec.receptive_field(layer, y, x);
                let nz = p
                    .pixels
                    .abs()
                    .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
                    .gt(0.0)
                    .nonzero();
                let nz: Vec<i64> = Vec::try_from(&nz.reshape([-1])).unwrap();
                assert!(!nz.is_empty());
                for c in nz.chunks(2) {
                    assert!(
                        c[0] >= y0 && c[0] <= y1 && c[1] >= x0 && c[1] <= x1,
                        "{arch} layer {layer} unit ({y},{x}): pixel {c:?} outside field {:?}",
                        (y0, x0, y1, x1)
                    );
                }
            }
        }
    }
}

#[test]
fn receptive_field_sizes() {
    let s = NetSpec::new(Arch::Zfnet, 1.0, 10);
    let side = |l| {
        let (y0, _, y1, _) = s.receptive_field(l, 5, 5);
        y1 - y0 + 1
    };
    // Worked by hand: n units of a layer cover (n-1)*stride+k units below.
    // conv3: 3 -> pool2 7 -> conv2 17 -> pool1 35 -> conv1 75 pixels.
    assert_eq!(
        [side(1), side(2), side(3), side(4), side(5)],
        [7, 27, 75, 107, 139]
    );
}

#[test]
fn forward_and_projection_match_pytorch() {
    let py = venv_python();
    assert!(
        py.exists(),
        "{} missing: run `make test` (it creates the venv)",
        py.display()
    );
    for (arch, layer, rank) in [
        (Arch::Zfnet, 5usize, 0usize),
        (Arch::Zfnet, 2, 3),
        (Arch::Alexnet, 4, 1),
        (Arch::Alexnet, 1, 0),
    ] {
        let net = random_net(arch, 0.1, 4);
        let dir =
            std::env::temp_dir().join(format!("zfvis-pyref-{}-{arch}-{layer}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let weights = dir.join("w.safetensors");
        checkpoint::save_weights(&net, &weights, false).unwrap();
        let x = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        x.write_npy(dir.join("x.npy")).unwrap();
        // A map that is active on image 0 (a dead map projects to zero).
        let trace1 = net.trace(&x.narrow(0, 0, 1));
        let map = deconv::top_maps(&trace1, layer, rank + 1).unwrap()[rank].0;
        let out = Command::new(&py)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/pytorch_ref.py"))
            .args([&arch.to_string(), "0.1", "0.02", "7"])
            .arg(&weights)
            .arg(dir.join("x.npy"))
            .arg(&dir)
            .args([layer.to_string(), map.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let trace = net.trace(&x);
        for l in 0..5 {
            let r = Tensor::read_npy(dir.join(format!("map{}.npy", l + 1))).unwrap();
            let d = (&trace.maps[l] - &r).abs().max().double_value(&[]);
            assert!(d < 1e-4, "{arch} conv{} differs by {d}", l + 1);
        }
        let r = Tensor::read_npy(dir.join("logits.npy")).unwrap();
        let d = (&trace.logits - &r).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{arch} logits differ by {d}");

        let p = deconv::project(
            &net,
            &trace1,
            &[ProjectRequest {
                layer,
                map,
                keep: Keep::Strongest,
            }],
        )
        .unwrap()
        .remove(0);
        let pos: Vec<i64> =
            Vec::try_from(&Tensor::read_npy(dir.join("proj_pos.npy")).unwrap()).unwrap();
        assert_eq!((p.y, p.x), (pos[0], pos[1]));
        let r = Tensor::read_npy(dir.join("proj.npy")).unwrap();
        let scale = r.abs().max().double_value(&[]);
        assert!(scale > 0.0, "reference projection is zero");
        // The gradient projects a unit activation; ours keeps the value.
        assert!(p.value > 0.0);
        let d = (&p.pixels / p.value - &r).abs().max().double_value(&[]);
        let ours = p.pixels.abs().max().double_value(&[]);
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "{arch} layer {layer} projection differs by {d} (scale {scale}, ours {ours}, value {})",
            p.value
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn checkpoint_errors_name_the_tensor() {
    let net = random_net(Arch::Zfnet, 0.1, 5);
    let dir = std::env::temp_dir().join(format!("zfvis-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.safetensors");
    checkpoint::save_weights(&net, &path, true).unwrap();
    // Round trip through fp16 is close.
    let mut other = random_net(Arch::Zfnet, 0.1, 6);
    checkpoint::load_weights(&mut other, &path).unwrap();
    let d = (net.conv_weight(0) - other.conv_weight(0))
        .abs()
        .max()
        .double_value(&[]);
    assert!(d < 1e-3);
    // A wider network: shape mismatch named.
    let mut wide = Net::new(NetSpec::new(Arch::Zfnet, 0.2, 7), Device::Cpu).unwrap();
    let e = checkpoint::load_weights(&mut wide, &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv1.bias") && e.contains("expected shape [19]") && e.contains("found [10]"),
        "{e}"
    );
    // A missing tensor named.
    let vars: Vec<(String, Tensor)> = net
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n != "fc7.weight")
        .collect();
    let partial = dir.join("partial.safetensors");
    Tensor::write_safetensors(&vars, &partial).unwrap();
    let e = checkpoint::load_weights(&mut other, &partial)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing tensor fc7.weight"), "{e}");
    // A corrupt file.
    std::fs::write(
        dir.join("bad.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00garbage",
    )
    .unwrap();
    let e = checkpoint::load_weights(&mut other, &dir.join("bad.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a readable safetensors file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// LRN's closed-form gradient (the gradient rules' step through LRN) equals
/// autograd's through the forward, for odd and even windows and a strong
/// normalisation (where the cross-channel term matters).
#[test]
fn lrn_backward_equals_autograd() {
    use zfvis_core::tch::{Device, Kind, Tensor};
    zfvis_core::tch::manual_seed(1);
    for size in [5, 4, 1] {
        let x = Tensor::randn([2, 7, 5, 5], (Kind::Float, Device::Cpu)) * 2.0;
        let g = Tensor::randn([2, 7, 5, 5], (Kind::Float, Device::Cpu));
        let (alpha, beta, k) = (0.5, 0.75, 1.0);
        let xg = x.detach().set_requires_grad(true);
        let y = zfvis_core::net::lrn_with(&xg, size, alpha, beta, k);
        let want =
            Tensor::run_backward(&[(y * &g).sum(Kind::Float)], &[&xg], false, false).remove(0);
        let got = zfvis_core::deconv::lrn_backward(&x, &g, size, alpha, beta, k);
        let err = (got - &want).abs().max().double_value(&[]);
        let scale = want.abs().max().double_value(&[]);
        assert!(
            err < 1e-5 * scale.max(1.0),
            "size {size}: max |error| {err} (max |grad| {scale})"
        );
    }
}

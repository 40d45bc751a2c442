//! Occlusion maps: batched and incremental evaluation equal the naive
//! one-forward-per-position map; bad requests are errors.

use zfvis_core::net::{Arch, Init, Layer, Net, NetSpec, Window};
use zfvis_core::occlusion::{self, Method, OcclusionRequest};
use zfvis_core::tch::{self, Device, Kind, Tensor};

fn net(arch: Arch) -> Net {
    from_spec(NetSpec::preset(arch, 0.1, 0.05, 6))
}

/// VGG11's layout at 1/16 of its widths (3x3 pad-1 convs, 2x2 pools,
/// adaptive average pool) or pytorchcv's ZFNet at 1/8 (LRN before
/// ceil-mode pools), with a grouped conv as in Caffe's AlexNet.
fn custom(kind: &str) -> NetSpec {
    let mut layers = vec![];
    let mut c = 3;
    let mut conv = |layers: &mut Vec<Layer>, out, w: Window, groups: i64| {
        let mut l = Layer::conv(&format!("c{}", layers.len()), c, out, w);
        if let Layer::Conv { groups: g, .. } = &mut l {
            *g = groups;
        }
        layers.push(l);
        layers.push(Layer::Relu);
        c = out;
    };
    let flat = if kind == "vgg" {
        for v in [4, 0, 8, 0, 16, 16, 0, 32, 32, 0, 32, 32, 0] {
            if v == 0 {
                layers.push(Layer::max_pool(Window::new(2, 2, 0), false));
            } else {
                conv(&mut layers, v, Window::new(3, 1, 1), 1);
            }
        }
        layers.push(Layer::AdaptiveAvgPool { out: 7 });
        32 * 49
    } else {
        let pool = || Layer::max_pool(Window::new(3, 2, 0), true);
        conv(&mut layers, 12, Window::new(7, 2, 1), 1);
        layers.extend([Layer::paper_lrn(), pool()]);
        conv(&mut layers, 32, Window::new(5, 2, 0), 2);
        layers.extend([Layer::paper_lrn(), pool()]);
        conv(&mut layers, 48, Window::new(3, 1, 1), 1);
        conv(&mut layers, 48, Window::new(3, 1, 1), 2);
        conv(&mut layers, 32, Window::new(3, 1, 1), 2);
        layers.push(pool());
        32 * 36
    };
    layers.extend([
        Layer::Flatten,
        Layer::linear("fc1", flat, 24),
        Layer::Relu,
        Layer::Dropout { p: 0.5 },
        Layer::linear("fc2", 24, 6),
    ]);
    NetSpec::chain(layers, 224)
}

/// A small graph network: a residual block with an identity shortcut (an
/// affine node, ReLU6 after the add), a downsampling block with a dilated
/// conv and a 1x1 shortcut, an inception-like concat with a max-pool branch.
fn graph() -> NetSpec {
    let conv = |name: &str, i, o, k, s, p| Layer::conv(name, i, o, Window::new(k, s, p));
    let mut dilated = conv("b2", 16, 16, 3, 1, 2);
    if let Layer::Conv { dilation, .. } = &mut dilated {
        *dilation = 2;
    }
    let layers = vec![
        conv("c0", 3, 8, 7, 2, 3),
        Layer::Relu,
        Layer::max_pool(Window::new(3, 2, 1), false),
        conv("a1", 8, 8, 3, 1, 1),
        Layer::Affine {
            name: "n1".into(),
            c: 8,
        },
        Layer::Relu,
        conv("a2", 8, 8, 3, 1, 1),
        Layer::Add,
        Layer::Clip { max: 6.0 },
        conv("b1", 8, 16, 3, 2, 1),
        Layer::Relu,
        dilated,
        conv("bs", 8, 16, 1, 2, 0),
        Layer::Add,
        Layer::Relu,
        conv("i1", 16, 8, 1, 1, 0),
        conv("i2", 16, 8, 5, 1, 2),
        Layer::max_pool(Window::new(3, 1, 1), true),
        conv("i3", 16, 8, 1, 1, 0),
        Layer::Concat,
        Layer::Relu,
        Layer::AdaptiveAvgPool { out: 1 },
        Layer::Flatten,
        Layer::linear("fc", 24, 6),
    ];
    let mut spec = NetSpec::chain(layers, 224);
    for (i, v) in [
        (7, vec![6, 2]),
        (12, vec![8]),
        (13, vec![11, 12]),
        (15, vec![14]),
        (16, vec![14]),
        (17, vec![14]),
        (19, vec![15, 16, 18]),
    ] {
        spec.nodes[i].inputs = Some(v);
    }
    spec.nodes[7].name = Some("block1".into());
    spec.nodes[19].name = Some("mixed".into());
    spec
}

/// The ops of issue 36: a ConvNeXt-like block (4x4 stride-4 stem, layer
/// norm over channels, 7x7 depthwise, GELU, layer scale, residual), then
/// a ShuffleNet-like one (channel split, SiLU and hard-swish, concat,
/// shuffle); with `gate`, a squeeze-excite gate (global pooling, sigmoid,
/// product) and a 1x7 conv, where the evaluator falls back.
fn modern(gate: bool) -> NetSpec {
    let conv = |name: &str, i, o, k, s, p| Layer::conv(name, i, o, Window::new(k, s, p));
    let dw = |name: &str, c, k, p| {
        let mut l = conv(name, c, c, k, 1, p);
        if let Layer::Conv { groups, .. } = &mut l {
            *groups = c;
        }
        l
    };
    let norm = |name: &str| Layer::ChannelNorm {
        name: name.into(),
        c: 16,
        eps: 1e-6,
    };
    let mut layers = vec![
        conv("stem", 3, 16, 4, 4, 0),
        norm("n0"),
        dw("dw", 16, 7, 3),
        norm("n1"),
        conv("pw1", 16, 32, 1, 1, 0),
        Layer::Gelu { tanh: false },
        conv("pw2", 32, 16, 1, 1, 0),
        Layer::Affine {
            name: "ls".into(),
            c: 16,
        },
        Layer::Add,
        Layer::Channels { start: 0, len: 8 },
        Layer::Channels { start: 8, len: 8 },
        conv("b1", 8, 8, 1, 1, 0),
        Layer::Silu,
        dw("b2", 8, 3, 1),
        Layer::HardSwish,
        Layer::Concat,
        Layer::ChannelShuffle { groups: 2 },
    ];
    let mut inputs = vec![
        (8, vec![7, 1]),
        (9, vec![8]),
        (10, vec![8]),
        (15, vec![9, 14]),
    ];
    if gate {
        // 17 pool, 18 fc, 19 sigmoid, 20 product, 21 the 1x7 conv.
        layers.extend([
            Layer::AdaptiveAvgPool { out: 1 },
            conv("fc", 16, 16, 1, 1, 0),
            Layer::Sigmoid,
            Layer::Mul,
            {
                let mut l = conv("wide", 16, 16, 1, 1, 0);
                if let Layer::Conv { kw, pad_w, .. } = &mut l {
                    (*kw, *pad_w) = (Some(7), Some(3));
                }
                l
            },
        ]);
        inputs.push((17, vec![16]));
        inputs.push((20, vec![16, 19]));
    }
    layers.extend([
        Layer::AdaptiveAvgPool { out: 1 },
        Layer::Flatten,
        Layer::linear("fc_out", 16, 6),
    ]);
    let mut spec = NetSpec::chain(layers, 224);
    for (i, v) in inputs {
        spec.nodes[i].inputs = Some(v);
    }
    spec.nodes[8].name = Some("block".into());
    spec.nodes[16].name = Some("shuffle".into());
    spec
}

fn from_spec(spec: NetSpec) -> Net {
    tch::manual_seed(11);
    let mut n = Net::new(spec, Device::Cpu).unwrap();
    n.init(Init::Kaiming);
    tch::no_grad(|| {
        for (name, mut t) in n.vs.variables() {
            if name.ends_with(".bias") {
                let _ = t.uniform_(-0.1, 0.1);
            }
        }
    });
    n
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    // Same grid: as many rows, each as long (a short grid is a failure).
    let shape = |g: &[Vec<f64>]| g.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(shape(a), shape(b), "grids of different shapes");
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn batched_and_incremental_equal_naive() {
    for (arch, size, stride) in [
        ("zfnet", 48, 16),
        ("zfnet", 37, 13),
        ("alexnet", 48, 16),
        ("zfnet", 8, 40),
        ("vgg", 48, 16),
        ("vgg", 37, 13),
        ("pytorchcv", 48, 16),
        ("pytorchcv", 29, 11),
        ("graph", 48, 16),
        ("graph", 37, 13),
        ("modern", 48, 16),
        ("modern", 37, 13),
        ("gated", 48, 16),
    ] {
        let n = match arch {
            "zfnet" => net(Arch::Zfnet),
            "alexnet" => net(Arch::Alexnet),
            "graph" => from_spec(graph()),
            "modern" => from_spec(modern(false)),
            "gated" => from_spec(modern(true)),
            other => from_spec(custom(other)),
        };
        // Gates see the whole map; a 1x7 kernel's windows differ by axis.
        let exact = zfvis_core::incremental::applies(&n);
        assert_eq!(exact, arch != "gated", "{arch}");
        let x = Tensor::randn([3, 224, 224], (Kind::Float, Device::Cpu));
        let run = |method, batch| {
            occlusion::occlude(
                &n,
                &x,
                &OcclusionRequest {
                    size,
                    stride,
                    class: Some(2),
                    batch,
                    method,
                },
            )
            .unwrap()
        };
        let naive = run(Method::Naive, 1);
        let n_pos = occlusion::positions(224, size, stride).unwrap().len();
        assert_eq!(naive.class_prob.len(), n_pos);
        assert_eq!(naive.class_prob[0].len(), n_pos);
        // The naive map is not flat: the occluder matters somewhere.
        let flat: Vec<f64> = naive.map_activation.iter().flatten().copied().collect();
        let spread = flat.iter().cloned().fold(f64::MIN, f64::max)
            - flat.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 1e-3, "{arch}: occlusion changes nothing");
        let methods: &[(Method, i64)] = if exact {
            &[
                (Method::Batched, 7),
                (Method::Incremental, 7),
                (Method::Incremental, 64),
            ]
        } else {
            &[(Method::Batched, 7)]
        };
        for &(method, batch) in methods {
            let r = run(method, batch);
            let dp = max_diff(&naive.class_prob, &r.class_prob);
            let scale = flat.iter().map(|v| v.abs()).fold(1.0, f64::max);
            let dm = max_diff(&naive.map_activation, &r.map_activation) / scale;
            assert!(
                dp < 1e-4,
                "{arch} {method:?} size {size}: class_prob differs by {dp}"
            );
            assert!(
                dm < 1e-4,
                "{arch} {method:?} size {size}: map activation differs by {dm} (relative)"
            );
            assert_eq!(r.strongest_map, naive.strongest_map);
            assert_eq!(r.positions.x, naive.positions.x);
            // Same grid shape; labels are not compared cell by cell, since a
            // near tie of the top two classes may flip within 1e-4.
            assert_eq!(r.top_label.len(), naive.top_label.len());
        }
    }
}

#[test]
fn first_position_equals_a_hand_made_occlusion() {
    let n = net(Arch::Zfnet);
    let x = Tensor::randn([3, 224, 224], (Kind::Float, Device::Cpu));
    let r = occlusion::occlude(
        &n,
        &x,
        &OcclusionRequest {
            size: 48,
            stride: 8,
            ..Default::default()
        },
    )
    .unwrap();
    // Square at (y=8, x=16): rows 8..56, cols 16..64 set to 0 by hand.
    let xo = x.copy();
    tch::no_grad(|| {
        let _ = xo.narrow(1, 8, 48).narrow(2, 16, 48).fill_(0.0);
    });
    let t = n.trace(&xo.unsqueeze(0));
    let p = t.probs().double_value(&[0, r.class]);
    assert!((r.class_prob[1][2] - p).abs() < 1e-5);
    let m = t.maps[4]
        .get(0)
        .get(r.strongest_map)
        .sum(Kind::Double)
        .double_value(&[]);
    assert!((r.map_activation[1][2] - m).abs() < 1e-4 * m.abs().max(1.0));
    assert_eq!(r.positions.x.len(), 23);
    assert_eq!(*r.positions.x.last().unwrap(), 176);
}

#[test]
fn bad_requests_are_errors() {
    let n = net(Arch::Zfnet);
    let x = Tensor::randn([3, 224, 224], (Kind::Float, Device::Cpu));
    let e = |size, stride, class| {
        occlusion::occlude(
            &n,
            &x,
            &OcclusionRequest {
                size,
                stride,
                class,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string()
    };
    assert!(e(300, 8, None).contains("occluder size"));
    assert!(e(48, 0, None).contains("stride must be at least 1"));
    assert!(e(48, 8, Some(6)).contains("class 6 is out of range"));
    assert!(e(48, 8, Some(-1)).contains("out of range"));
}

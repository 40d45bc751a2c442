use super::*;

fn map_sides(s: &NetSpec) -> Vec<i64> {
    s.convs().iter().map(|c| c.side).collect()
}

#[test]
fn zfnet_sizes_match_the_paper() {
    let s = NetSpec::new(Arch::Zfnet, 1.0, 1000);
    assert_eq!(map_sides(&s), vec![110, 26, 13, 13, 13]);
    let shapes = s.shapes().unwrap();
    assert_eq!(shapes[2], Shape::Maps { c: 96, side: 55 });
    assert_eq!(shapes[6], Shape::Maps { c: 256, side: 13 });
    assert!(s.ops().any(|l| *l == Layer::linear("fc6", 9216, 4096)));
    assert_eq!(s.num_classes(), 1000);
    let hidden: Vec<String> = s.hidden_fcs().into_iter().map(|h| h.1).collect();
    assert_eq!(hidden, ["fc6", "fc7"]);
}

#[test]
fn alexnet_sizes_match_the_paper() {
    let s = NetSpec::new(Arch::Alexnet, 1.0, 1000);
    assert_eq!(map_sides(&s), vec![55, 27, 13, 13, 13]);
    assert!(s.ops().any(|l| *l == Layer::linear("fc6", 9216, 4096)));
}

#[test]
fn ceil_mode_follows_pytorch() {
    // pytorchcv's ZFNet: 110 -> 55 with a 3x3 s2 ceil-mode pool; 13 -> 6.
    assert_eq!(Window::new(3, 2, 0).out_size(110, true), 55);
    assert_eq!(Window::new(3, 2, 0).out_size(13, true), 6);
    assert_eq!(Window::new(2, 2, 0).out_size(7, true), 4);
    assert_eq!(Window::new(2, 2, 0).out_size(7, false), 3);
}

#[test]
fn conv1_receptive_field_is_the_kernel() {
    let s = NetSpec::new(Arch::Zfnet, 1.0, 10);
    assert_eq!(s.receptive_field(1, 0, 0), (-1, -1, 5, 5));
    assert_eq!(s.receptive_field(1, 3, 2), (5, 3, 11, 9));
    // conv2 (5x5 s2) on pool1 (3x3 s2 p1) on conv1 (7x7 s2 p1).
    let (y0, _, y1, _) = s.receptive_field(2, 0, 0);
    assert_eq!((y0, y1), (-3, 23));
}

#[test]
fn manifest_layers_round_trip() {
    let s = NetSpec::new(Arch::Alexnet, 0.5, 10);
    let text = serde_json::to_string(&s.nodes).unwrap();
    assert!(
        text.contains(r#"{"op":"conv","name":"conv1","in":3,"out":48,"k":11,"stride":4,"pad":2}"#)
    );
    let back: Vec<Node> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s.nodes);
}

#[test]
fn bad_layer_lists_are_refused_with_the_layer() {
    let mut s = NetSpec::new(Arch::Zfnet, 0.1, 3);
    s.nodes[4].op = Layer::conv("conv2", 7, 26, Window::new(5, 2, 0));
    let e = s.validate().unwrap_err().to_string();
    assert!(
        e.contains("layer 4 (conv)") && e.contains("7 input channels"),
        "{e}"
    );
}

#[test]
fn clipping_rescales_only_large_filters() {
    let mut net = Net::new(NetSpec::new(Arch::Zfnet, 0.1, 3), Device::Cpu).unwrap();
    tch::no_grad(|| {
        let w = net.conv_weight(0).shallow_clone();
        let mut big = w.get(0);
        let _ = big.fill_(1.0);
        let mut small = w.get(1);
        let _ = small.fill_(0.01);
    });
    net.clip_filters(0.1);
    let w = net.conv_weight(0);
    let rms = |t: Tensor| t.square().mean(Kind::Float).sqrt().double_value(&[]);
    assert!((rms(w.get(0)) - 0.1).abs() < 1e-6);
    assert!((rms(w.get(1)) - 0.01).abs() < 1e-6);
}

//! Invariance curves: zero at the identity, 360° = 0°, and the transforms
//! against hand-made shifts and rotations.

use zfvis_core::invariance::{self, InvarianceRequest, Transform};
use zfvis_core::net::{Arch, Init, Net, NetSpec};
use zfvis_core::tch::{self, Device, Kind, Tensor};

fn net() -> Net {
    tch::manual_seed(5);
    let spec = NetSpec::preset(Arch::Zfnet, 0.1, 0.05, 5);
    let mut n = Net::new(spec, Device::Cpu).unwrap();
    n.init(Init::Kaiming);
    n
}

#[test]
fn identity_is_zero_and_360_equals_0() {
    let n = net();
    let x = Tensor::randn([3, 224, 224], (Kind::Float, Device::Cpu));
    let r = invariance::invariance(
        &n,
        &x,
        &InvarianceRequest {
            steps: 6,
            class: Some(1),
        },
    )
    .unwrap();
    assert_eq!(r.class, 1);
    for (t, c) in [
        (Transform::Translate, &r.translate),
        (Transform::Scale, &r.scale),
        (Transform::Rotate, &r.rotate),
    ] {
        let i = c
            .values
            .iter()
            .position(|&v| v == t.identity())
            .expect("identity is a point");
        assert_eq!(c.dist_layer1[i], 0.0, "{t:?}");
        assert_eq!(c.dist_layer7[i], 0.0, "{t:?}");
        assert!(c.values.len() == 6 || c.values.len() == 7);
        // Away from the identity the features move.
        assert!(c.dist_layer1.iter().any(|&d| d > 0.0));
    }
    let last = r.rotate.values.len() - 1;
    assert_eq!(r.rotate.values[last], 360.0);
    assert_eq!(r.rotate.dist_layer1[last], 0.0);
    assert_eq!(r.rotate.prob[last], r.rotate.prob[0]);
    // Even steps: -60..60 in 6 steps misses 0, which is added.
    assert!(r.translate.values.contains(&0.0));
    assert_eq!(r.translate.values.len(), 7);
}

#[test]
fn translation_is_a_shift_with_the_mean_fill() {
    let x = Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu));
    let y = invariance::apply(&x, Transform::Translate, 10.0);
    let expect = Tensor::zeros([1, 3, 224, 224], (Kind::Float, Device::Cpu));
    expect.narrow(2, 10, 214).copy_(&x.narrow(2, 0, 214));
    let d = (&y - &expect).abs().max().double_value(&[]);
    assert!(d < 1e-3, "shift differs by {d}");
    let up = invariance::apply(&x, Transform::Translate, -60.0);
    assert!(
        up.narrow(2, 164, 60).abs().max().double_value(&[]) < 1e-3,
        "entering pixels take the mean (0)"
    );
}

#[test]
fn rotation_by_90_is_rot90() {
    let x = Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu));
    let y = invariance::apply(&x, Transform::Rotate, 90.0);
    let a = (&y - x.rot90(1, [2, 3])).abs().max().double_value(&[]);
    let b = (&y - x.rot90(-1, [2, 3])).abs().max().double_value(&[]);
    assert!(
        a.min(b) < 1e-3,
        "rotation by 90 differs from rot90 by {}",
        a.min(b)
    );
}

#[test]
fn bad_requests() {
    let n = net();
    let x = Tensor::randn([3, 224, 224], (Kind::Float, Device::Cpu));
    let e = |steps, class| {
        invariance::invariance(&n, &x, &InvarianceRequest { steps, class })
            .unwrap_err()
            .to_string()
    };
    assert!(e(1, None).contains("steps must be"));
    assert!(e(5, Some(5)).contains("class 5 is out of range"));
}

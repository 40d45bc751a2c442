//! Eigen-CAM (Muhammad & Yeasin 2020), as the grad-cam package's
//! `EigenCAM`: the unit's maps at each position, centred, projected on
//! their first right singular vector; no gradient, no class. The sign of a
//! singular vector is arbitrary (LAPACK's differ: numpy's and libtorch's
//! disagree on 85 of 200 random matrices), so it is fixed as the package's
//! `get_2d_projection_with_sign_correction` fixes it: the projection is
//! negated when |min| > |max|. Then the package's finish.

use super::{cam, Attribution, Info, Method};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct Eigencam;
pub const EIGENCAM: Method = Method(&Eigencam);

static INFO: Info = cam::info(
    "eigencam",
    "Eigen-CAM",
    "Eigen-CAM (Muhammad & Yeasin 2020): the maps' first principal component, whatever the class",
    "#8d6e63",
    false,
);

impl Attribution for Eigencam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, _: Target, o: &Options) -> Result<Tensor> {
        let a = cam::activations(e, o.cam_layer);
        let (c, h, w) = (a.size()[1], a.size()[2], a.size()[3]);
        let r = a
            .to_kind(Kind::Float)
            .view([c, h * w])
            .transpose(0, 1)
            .nan_to_num(0.0, None, None);
        let r = &r - r.mean_dim([0i64].as_slice(), true, Kind::Float);
        let (_, _, v) = r.svd(true, true);
        let p = r.matmul(&v.select(1, 0));
        let (lo, hi) = (p.min().double_value(&[]), p.max().double_value(&[]));
        let p = if lo.abs() > hi.abs() { -p } else { p };
        cam::finish(e, &p.view([h, w]))
    }
}

//! A layout: the nodes of a state dict's network and how its tensors map
//! onto them; built by the chain layouts (`layouts.rs`), the graph layouts
//! (`graphs.rs`) and `--layers` files, chosen by name in `registry.rs`.

use crate::net::{Layer, Node};
use std::collections::HashMap;

/// A layout: the layers, and for batch-norm variants which conv each BN
/// (by its tensor prefix) follows.
pub struct Layout {
    /// The nodes (graph networks: with the nodes each reads and the units' names).
    pub nodes: Vec<Node>,
    /// conv name -> batch-norm prefix (`features.1`); affine nodes are
    /// batch norms named by their prefix.
    pub bn: HashMap<String, String>,
    /// Affine nodes that are a tensor of the file, not a batch norm
    /// (ConvNeXt's layer scale): node name -> tensor name; shift 0.
    pub scales: HashMap<String, String>,
    pub bn_eps: f64,
    /// Convs may hold no bias in the file (`bias=False`): zero then.
    pub convs_without_bias: bool,
    /// Preprocessing the networks of this layout were trained with.
    pub preprocess: &'static str,
    /// The input size the layout fixes (a transformer's position
    /// embedding); None: 224 unless the user says.
    pub input_size: Option<i64>,
}

impl Layout {
    pub fn chain(
        layers: Vec<Layer>,
        bn: HashMap<String, String>,
        preprocess: &'static str,
    ) -> Self {
        Layout {
            nodes: layers.into_iter().map(Node::from).collect(),
            bn,
            scales: HashMap::new(),
            bn_eps: 1e-5,
            convs_without_bias: false,
            preprocess,
            input_size: None,
        }
    }
}

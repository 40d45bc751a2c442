//! One place that checks what a request names against a network: a unit
//! (`layer`, 1-based), a map of it (0-based), a class. Each error names the
//! range the network has; callers validate before they index (libtorch
//! panics on bad indices).

use super::units::Unit;
use anyhow::{bail, Result};

/// A unit number among `n` units.
pub fn layer(layer: usize, n: usize) -> Result<()> {
    if !(1..=n).contains(&layer) {
        bail!("layer {layer} is out of range: expected 1..={n}");
    }
    Ok(())
}

/// A unit (conv layers, then named units) and a map of it; the range given
/// for the unit is the conv layers'.
pub fn layer_map(units: &[Unit], layer: usize, map: i64) -> Result<()> {
    if !(1..=units.len()).contains(&layer) {
        let convs = units.iter().filter(|u| u.layer.is_some()).count();
        bail!("layer {layer} is out of range: expected 1..={convs}");
    }
    maps(layer, map, units[layer - 1].c)
}

/// A map of a layer with `c` maps.
pub fn maps(layer: usize, map: i64, c: i64) -> Result<()> {
    if map < 0 || map >= c {
        bail!(
            "map {map} is out of range: layer {layer} has maps 0..{}",
            c - 1
        );
    }
    Ok(())
}

/// A class among `n` classes.
pub fn class(class: i64, n: i64) -> Result<()> {
    if class < 0 || class >= n {
        bail!(
            "class {class} is out of range: the model has classes 0..{}",
            n - 1
        );
    }
    Ok(())
}

//! Short unit names a user knows, from the long names graphs carry:
//! tf2onnx's scopes (`StatefulPartitionedCall/functional_1/mobilenetv2_1.00_160_1/block_1_depthwise_BN_1/batchnorm/mul_1:0`
//! -> `block_1_depthwise`: the prefix every name shares and `:0` dropped,
//! the Keras layer's name, a batch norm's as its conv's), the TorchScript
//! exporter's (`/layer1/layer1.0/relu_1/Relu_output_0` -> `layer1.0`: the
//! deepest module path). Module paths (`features.3`) stay as they are.

/// One name without exporter decoration: `:0` and `_output_0` dropped.
fn bare(name: &str) -> &str {
    let n = name.strip_suffix("_output_0").unwrap_or(name);
    match n.rsplit_once(':') {
        Some((head, tail)) if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => n,
    }
}

/// The TorchScript exporter's `/a/a.b/a.b.c/sub/Op`: the deepest module
/// path (`a.b.c`), and the name from it on (`a.b.c/sub/Op`).
fn torchscript(name: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = name.strip_prefix('/')?.split('/').collect();
    let (_, scopes) = parts.split_last()?;
    let top = scopes.first()?;
    let k = scopes.iter().rposition(|p| p.starts_with(top))?;
    Some((scopes[k].to_string(), parts[k..].join("/")))
}

/// `part` without a trailing `_<digits>`, if it has one.
fn call_suffix(part: &str) -> Option<&str> {
    let (head, n) = part.rsplit_once('_')?;
    (!head.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(head)
}

/// A Keras layer's name from its scope part: TensorFlow's call suffix
/// (`_1`, when every scope has one) dropped, and a batch norm's
/// `_BN`/`_bn` (folded into its conv, whose name it then is).
fn keras_layer(part: &str, suffixed: bool) -> String {
    let s = if suffixed {
        call_suffix(part).unwrap_or(part)
    } else {
        part
    };
    for suffix in ["_BN", "_bn"] {
        if let Some(h) = s.strip_suffix(suffix) {
            return h.to_string();
        }
    }
    s.to_string()
}

/// The short name of each of `names` (in order). Where several share a
/// short name (a block's convs, norms and activations), the last (the
/// block's output) gets it and the others their name from the module or
/// layer on (`layer1.0/conv1/Conv`); what is still not unique stays whole.
pub fn shorten(names: &[String]) -> Vec<String> {
    let bare: Vec<&str> = names.iter().map(|n| bare(n)).collect();
    // The scope prefix all slash-separated (non-TorchScript) names share.
    let scoped: Vec<&str> = bare
        .iter()
        .copied()
        .filter(|n| n.contains('/') && !n.starts_with('/'))
        .collect();
    let prefix = match scoped.split_first() {
        Some((first, rest)) if !rest.is_empty() => {
            let mut p: Vec<&str> = first.split('/').collect();
            p.pop();
            for n in rest {
                let q: Vec<&str> = n.split('/').collect();
                let k = p.iter().zip(&q).take_while(|(a, b)| a == b).count();
                p.truncate(k.min(q.len().saturating_sub(1)));
            }
            p.iter().map(|s| format!("{s}/")).collect::<String>()
        }
        _ => String::new(),
    };
    // Whether TensorFlow suffixed every layer scope (`block_1_1`).
    let scope = |n: &str| {
        n.strip_prefix(prefix.as_str())
            .and_then(|r| r.split('/').next())
            .map(String::from)
    };
    let suffixed = !scoped.is_empty()
        && scoped
            .iter()
            .all(|n| scope(n).is_some_and(|p| call_suffix(&p).is_some()));
    // (short, detailed) per name.
    let forms: Vec<(String, String)> = bare
        .iter()
        .map(|n| {
            if let Some(t) = torchscript(n) {
                return t;
            }
            match n.strip_prefix(prefix.as_str()).filter(|_| n.contains('/')) {
                Some(rest) => (
                    keras_layer(rest.split('/').next().unwrap_or(rest), suffixed),
                    rest.to_string(),
                ),
                None => (n.to_string(), n.to_string()),
            }
        })
        .collect();
    let picked: Vec<String> = forms
        .iter()
        .enumerate()
        .map(|(i, (short, detail))| {
            let last = forms.iter().rposition(|(s, _)| s == short) == Some(i);
            if last {
                short.clone()
            } else {
                detail.clone()
            }
        })
        .collect();
    picked
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if picked.iter().filter(|t| *t == s).count() > 1 {
                bare[i].to_string()
            } else {
                s.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shorten;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tf2onnx_scopes_become_keras_layer_names() {
        let p = "StatefulPartitionedCall/functional_1/mobilenetv2_1.00_160_1";
        let names = v(&[
            &format!("{p}/block_1_depthwise_BN_1/batchnorm/mul_1:0"),
            &format!("{p}/block_1_project_BN_1/batchnorm/add_1:0"),
            &format!("{p}/Conv1_relu_1/Relu6:0"),
        ]);
        assert_eq!(
            shorten(&names),
            ["block_1_depthwise", "block_1_project", "Conv1_relu"]
        );
    }

    #[test]
    fn keras_call_suffixes_go_when_every_scope_has_one() {
        let p = "StatefulPartitionedCall/inception_v3_1";
        let names = v(&[
            &format!("{p}/activation_1/Relu:0"),
            &format!("{p}/activation_1_1/Relu:0"),
            &format!("{p}/mixed0_1/concat:0"),
        ]);
        assert_eq!(shorten(&names), ["activation", "activation_1", "mixed0"]);
    }

    #[test]
    fn torchscript_names_become_module_paths() {
        let names = v(&[
            "/layer1/layer1.0/relu_1/Relu_output_0",
            "/features/features.3/features.3.1/Add_output_0",
            "/conv1/Conv_output_0",
            "features.3",
            "relu_3",
        ]);
        assert_eq!(
            shorten(&names),
            ["layer1.0", "features.3.1", "conv1", "features.3", "relu_3"]
        );
    }

    #[test]
    fn a_block_output_gets_the_short_name_and_its_parts_their_paths() {
        let names = v(&[
            "/layer1/layer1.0/conv1/Conv_output_0",
            "/layer1/layer1.0/relu/Relu_output_0",
            "/layer1/layer1.0/relu_1/Relu_output_0",
            "x/y_1/a",
            "x/y_1/a",
        ]);
        assert_eq!(
            shorten(&names),
            [
                "layer1.0/conv1/Conv",
                "layer1.0/relu/Relu",
                "layer1.0",
                "x/y_1/a",
                "x/y_1/a"
            ]
        );
    }
}

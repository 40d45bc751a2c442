//! The shape of the code base, checked: no function over 150 lines in the
//! product or the harnesses, no test including a source file by path, the
//! product's `--help` listing what a user does (the harnesses in
//! `zfvis-dev`), and no `--help` showing a path of the machine it was built on.

mod common;

use common::{root, workspace_bin};
use std::path::{Path, PathBuf};
use std::process::Command;

const MAX_LINES: usize = 150;

/// Rust source with comments, strings and char literals blanked (newlines
/// kept), so that braces can be counted.
fn code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let word_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |k| i + k);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |k| i + 2 + k + 2);
            blank(&mut out, i, end);
            i = end;
        } else if !word_before
            && (rest.starts_with(b"r#") || rest.starts_with(b"r\"") || rest.starts_with(b"br"))
        {
            // Raw strings: r"…", r#"…"#, br"…".
            let start = if rest[0] == b'b' { i + 1 } else { i };
            let hashes = b[start + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(start + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let body = start + 2 + hashes;
            let end = src[body..]
                .find(&close)
                .map_or(b.len(), |k| body + k + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            let len = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|k| k + 3)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            let len = len.unwrap_or(1);
            blank(&mut out, i, i + len);
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

/// (lines, name, first line) of every function with a body in `src`.
fn functions(src: &str) -> Vec<(usize, String, usize)> {
    let code = code_only(src);
    let line_of = |pos: usize| code[..pos].iter().filter(|&&c| c == b'\n').count() + 1;
    let mut found = vec![];
    let mut i = 0;
    while i + 3 < code.len() {
        let is_fn = &code[i..i + 3] == b"fn "
            && (i == 0 || !(code[i - 1].is_ascii_alphanumeric() || code[i - 1] == b'_'));
        if !is_fn {
            i += 1;
            continue;
        }
        let name: String = code[i + 3..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .map(|&c| c as char)
            .collect();
        // The body: the first `{` outside brackets, unless a `;` ends a declaration first.
        let (mut j, mut depth) = (i + 3, 0i32);
        let open = loop {
            match code.get(j) {
                None => break None,
                Some(b'(' | b'[' | b'<') => depth += 1,
                Some(b')' | b']') => depth -= 1,
                Some(b'>') if code[j - 1] != b'-' && code[j - 1] != b'=' => depth -= 1,
                Some(b';') if depth <= 0 => break None,
                Some(b'{') if depth <= 0 => break Some(j),
                _ => {}
            }
            j += 1;
        };
        let Some(open) = open else {
            i += 3;
            continue;
        };
        let mut braces = 0;
        let mut close = open;
        for (k, &c) in code[open..].iter().enumerate() {
            match c {
                b'{' => braces += 1,
                b'}' => {
                    braces -= 1;
                    if braces == 0 {
                        close = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let (first, last) = (line_of(i), line_of(close));
        found.push((last - first + 1, name, first));
        i += 3;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_measure_counts_what_it_should() {
    let src = "fn a() {\n    let s = \"}\";\n    let c = '}';\n    // }\n}\n\
               fn b<'x>(v: &'x [u8]) -> Option<&'x u8> where u8: Copy {\n    /* { */\n    v.first()\n}\n\
               fn decl(x: u8);\n";
    let f = functions(src);
    assert_eq!(f, vec![(5, "a".into(), 1), (4, "b".into(), 6)], "{f:?}");
}

#[test]
fn no_function_over_150_lines() {
    let mut files = vec![];
    for d in ["core/src", "server/src", "dev/src"] {
        rust_files(&root().join(d), &mut files);
    }
    assert!(files.len() > 40, "{} files", files.len());
    let mut all = vec![];
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        for (n, name, line) in functions(&src) {
            all.push((
                n,
                format!(
                    "{}:{line} {name}",
                    f.strip_prefix(root()).unwrap_or(f).display()
                ),
            ));
        }
    }
    all.sort_by(|a, b| b.cmp(a));
    eprintln!("longest functions: {:?}", &all[..5]);
    let long: Vec<_> = all.iter().filter(|(n, _)| *n > MAX_LINES).collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines: {long:?}"
    );
}

#[test]
fn tests_do_not_include_product_sources() {
    let mut files = vec![];
    for d in ["tests", "core/tests"] {
        rust_files(&root().join(d), &mut files);
    }
    for f in files {
        if f.components().any(|c| c.as_os_str() == "node_modules") {
            continue;
        }
        let src = std::fs::read_to_string(&f).unwrap();
        assert!(
            !src.contains(concat!("#[", "path")),
            "{} includes a source file by path",
            f.display()
        );
    }
}

fn help(exe: &Path, args: &[&str]) -> String {
    let o = Command::new(exe).args(args).arg("--help").output().unwrap();
    assert!(o.status.success(), "{args:?} --help failed");
    String::from_utf8(o.stdout).unwrap()
}

/// The subcommands a `--help` lists.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn help_lists_user_commands_and_no_build_paths() {
    let zfvis = Path::new(env!("CARGO_BIN_EXE_zfvis"));
    let top = help(zfvis, &[]);
    let cmds = commands(&top);
    for c in ["serve", "predict", "project", "import", "figures", "bench"] {
        assert!(cmds.iter().any(|x| x == c), "zfvis --help lacks {c}: {top}");
    }
    for c in ["fuzz", "soak", "bench-http"] {
        assert!(
            !cmds.iter().any(|x| x == c),
            "zfvis --help lists {c}: {top}"
        );
    }
    let dev = workspace_bin("zfvis-dev");
    let dev_cmds = commands(&help(&dev, &[]));
    assert_eq!(dev_cmds, ["fuzz", "soak", "bench-http"]);
    let build_root = root().canonicalize().unwrap();
    let build_root = build_root.to_string_lossy();
    for (exe, list) in [(zfvis, &cmds), (dev.as_path(), &dev_cmds)] {
        for c in list.iter() {
            let h = help(exe, &[c]);
            assert!(
                !h.contains(&*build_root),
                "{c} --help shows a build path: {h}"
            );
            // Every flag is described.
            for l in h.lines().filter(|l| l.trim_start().starts_with("--")) {
                let described = l
                    .trim_start()
                    .split_once("  ")
                    .is_some_and(|(_, d)| !d.trim().is_empty());
                let next_is_text = h.lines().skip_while(|x| *x != l).nth(1).is_some_and(|n| {
                    n.starts_with("          ") && !n.trim_start().starts_with('-')
                });
                assert!(
                    described || next_is_text,
                    "{c}: flag without a description: {l:?}"
                );
            }
        }
    }
}

/// Rust source without its comments (line comments and doc comments).
fn without_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_source_file_over_1000_lines() {
    let mut files = vec![];
    for d in ["core/src", "server/src"] {
        rust_files(&root().join(d), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 1000).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 1,000 lines: {long:?}");
}

/// The module path of a source file under a crate's `src` (`net::graph`).
fn module_of(src_root: &Path, f: &Path) -> Vec<String> {
    let rel = f.strip_prefix(src_root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The paths a file names: `crate::a::b…` as they are, `super::x…` from its
/// parent module.
fn named_paths(module: &[String], src: &str) -> Vec<Vec<String>> {
    let code = without_comments(src);
    let mut out = vec![];
    for (prefix, base) in [
        ("crate::", vec![]),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut p = base.clone();
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            p.extend(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            out.push(p);
        }
    }
    out
}

/// Pairs of sibling modules that read each other, directly or around a
/// circle (`import::graphs` -> `import::layouts` -> `import::graphs`).
fn circles(src_root: &Path) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut files = vec![];
    rust_files(src_root, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(src_root, f), f.clone()))
        .collect();
    // Edges between siblings: the first differing component of the two paths.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, f) in &modules {
        let src = std::fs::read_to_string(f).unwrap();
        for p in named_paths(m, &src) {
            let Some(target) = (1..=p.len())
                .rev()
                .map(|k| p[..k].to_vec())
                .find(|k| modules.contains_key(k))
            else {
                continue;
            };
            let common = m.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == m.len() || common == target.len() {
                continue; // a module and its own parent or child
            }
            edges
                .entry(m[..=common].to_vec())
                .or_default()
                .insert(target[..=common].to_vec());
        }
    }
    let mut found = vec![];
    for start in edges.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start.clone(), vec![start.join("::")])];
        let mut seen = BTreeSet::new();
        while let Some((n, path)) = stack.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if next == start {
                    found.push(format!("{} -> {}", path.join(" -> "), start.join("::")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.join("::"));
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let d = common::tempdir("circles");
    std::fs::create_dir_all(d.join("import")).unwrap();
    std::fs::write(d.join("lib.rs"), "mod import;\n").unwrap();
    std::fs::write(d.join("import/mod.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(d.join("import/a.rs"), "use super::b::Layout;\n").unwrap();
    std::fs::write(
        d.join("import/b.rs"),
        "// crate::import::a\nfn f() { crate::import::a::g() }\n",
    )
    .unwrap();
    let c = circles(&d);
    assert!(
        c.iter().any(|c| c == "import::a -> import::b -> import::a"),
        "{c:?}"
    );
    std::fs::write(d.join("import/b.rs"), "// crate::import::a is not read\n").unwrap();
    assert!(circles(&d).is_empty());
}

#[test]
fn no_import_circles() {
    for d in ["core/src", "server/src", "dev/src"] {
        let c = circles(&root().join(d));
        assert!(c.is_empty(), "{d}: modules that read each other: {c:?}");
    }
}

/// The science (the network, the deconvnet and its successors, the
/// methods, the measures) stands beneath the analyses: it never reads the
/// engine, the analysis traits or the analyses.
#[test]
fn science_does_not_read_the_analyses() {
    let science = [
        "net",
        "deconv",
        "explain",
        "methods",
        "occlusion",
        "incremental",
        "invariance",
        "correspondence",
        "sanity",
        "compare",
        "picture",
    ];
    let src_root = root().join("core/src");
    let mut files = vec![];
    rust_files(&src_root, &mut files);
    for f in files {
        let m = module_of(&src_root, &f);
        if !m.first().is_some_and(|top| science.contains(&top.as_str())) {
            continue;
        }
        let src = std::fs::read_to_string(&f).unwrap();
        for p in named_paths(&m, &src) {
            let top = p.first().map(String::as_str);
            assert!(
                !matches!(top, Some("engine" | "analysis" | "analyses")),
                "{} reads crate::{}",
                f.display(),
                p.join("::")
            );
        }
    }
}

/// A method's name is written once, in its file of the registry; the
/// command line, the API, the page, the sanity check and the benchmarks
/// read it from there.
#[test]
fn method_names_live_in_the_registry() {
    let mut files = vec![];
    for d in ["core/src", "server/src", "dev/src"] {
        rust_files(&root().join(d), &mut files);
    }
    files.push(root().join("static/methods.js"));
    files.push(root().join("frontend/methods.html"));
    assert!(zfvis_core::methods::ALL.len() >= 7);
    for m in zfvis_core::methods::ALL {
        let quoted = format!("\"{}\"", m.name());
        let holders: Vec<String> = files
            .iter()
            .filter(|f| std::fs::read_to_string(f).unwrap().contains(&quoted))
            .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "{quoted} is written in {holders:?}: expected one file, the method's own"
        );
        assert!(holders[0].starts_with("core/src/methods/"), "{holders:?}");
    }
}

/// The justified exceptions to "no silent default": (file, code, why).
const DEFAULTS_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "core/src/net/graph.rs",
        "self.shapes().unwrap_or_default()",
        "valid_shapes: structural queries on a spec `validate` accepted (it refuses one whose shapes fail)",
    ),
    (
        "core/src/files.rs",
        ".unwrap_or_default()",
        "name_of: a path without a last component (`/`, `..`) has the empty name",
    ),
    (
        "core/src/progress.rs",
        ".unwrap_or_default()",
        "cancel_flag: a job not in the table has a fresh, unset flag",
    ),
    (
        "core/src/import/mod.rs",
        "o.fit.unwrap_or_default()",
        "a command-line option left out takes its documented default",
    ),
    (
        "core/src/import/mod.rs",
        "o.filter.unwrap_or_default()",
        "a command-line option left out takes its documented default",
    ),
    (
        "server/src/http/mod.rs",
        "to_bytes(body, 4096).await.unwrap_or_default()",
        "an error answer's body that cannot be read is replaced by its status text",
    ),
    (
        "core/src/import/onnx/rewrite.rs",
        ".ok()",
        "axes: pattern matching of a decomposed layer norm; no match leaves the nodes to the reader, which names what it refuses",
    ),
];

/// Tensor reads, shape inference and serialisation: results that are
/// computed, whose failure must be an error, never a default.
const COMPUTED: &[&str] = &[
    "try_from(",
    "values(",
    "_value(",
    "shapes()",
    "to_value(",
    "to_vec(",
    "serde_json::to_string(",
];
const DEFAULTING: &[&str] = &[
    "unwrap_or_default()",
    ".ok()",
    "unwrap_or(",
    "unwrap_or_else(",
];

/// Where results are computed (the science and the analyses): `.ok()`
/// turns a failure into "nothing" and is not used there.
const COMPUTING: &[&str] = &[
    "core/src/analyses/",
    "core/src/methods/",
    "core/src/net/",
    "core/src/deconv.rs",
    "core/src/explain.rs",
    "core/src/occlusion.rs",
    "core/src/incremental.rs",
    "core/src/invariance.rs",
    "core/src/correspondence.rs",
    "core/src/compare.rs",
    "core/src/sanity.rs",
    "core/src/predict.rs",
    "core/src/picture.rs",
    "core/src/probe.rs",
    "core/src/transfer.rs",
    "core/src/classify.rs",
    "core/src/import/onnx/",
];

/// A finding unless (file, statement) is in [`DEFAULTS_ALLOWED`].
fn allowed(file: &str, stmt: &str) -> bool {
    DEFAULTS_ALLOWED
        .iter()
        .any(|(f, code, _)| *f == file && stmt.contains(code))
}

/// Statements of `src` (code only, split at `;`, `{`, `}` and a match
/// arm's `=>`), trimmed, with their first line.
fn statements(src: &str) -> Vec<(usize, String)> {
    let code = String::from_utf8(code_only(src))
        .unwrap()
        .replace("=>", "; ");
    let mut out = vec![];
    let (mut line, mut start_line, mut cur) = (1, 1, String::new());
    for c in code.chars() {
        if c == '\n' {
            line += 1;
        }
        if matches!(c, ';' | '{' | '}') {
            let s: String = cur.split_whitespace().collect::<Vec<_>>().join(" ");
            if !s.is_empty() {
                out.push((start_line, s));
            }
            cur.clear();
            start_line = line;
        } else {
            if cur.trim().is_empty() {
                start_line = line;
            }
            cur.push(c);
        }
    }
    out
}

/// No computed result falls back to a default in silence (issue 37): no
/// `unwrap_or_default()` but the justified exceptions; no default after a
/// tensor read, a shape inference or a serialisation; no `.ok()` where
/// results are computed.
#[test]
fn computed_results_are_errors_not_defaults() {
    let mut files = vec![];
    for d in ["core/src", "server/src"] {
        rust_files(&root().join(d), &mut files);
    }
    let mut found = vec![];
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        let src = std::fs::read_to_string(f).unwrap();
        // Unit tests at the end of a file may unwrap as they like.
        let src = src.split("#[cfg(test)]").next().unwrap();
        for (line, stmt) in statements(src) {
            // A default applied to a computed value: after it in the
            // statement (a default computed in a closure is not one).
            let first = COMPUTED.iter().filter_map(|c| stmt.find(c)).min();
            let computed = first.is_some_and(|k| DEFAULTING.iter().any(|d| stmt[k..].contains(d)));
            let default = stmt.contains("unwrap_or_default()");
            let ok = stmt.contains(".ok()") && COMPUTING.iter().any(|p| rel.starts_with(p));
            if (computed || default || ok) && !allowed(&rel, &stmt) {
                found.push(format!("{rel}:{line}: {stmt}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "silent defaults (return an error naming what failed, or justify in DEFAULTS_ALLOWED):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_default_finder_finds_defaults() {
    let src = "fn f(t: &Tensor) -> Vec<f32> {\n    let v = Vec::try_from(t)\n        .unwrap_or_default();\n    v\n}\n// x.ok()\n";
    let s = statements(src);
    assert_eq!(
        s[1],
        (2, "let v = Vec::try_from(t) .unwrap_or_default()".into()),
        "{s:?}"
    );
    assert!(
        !s.iter().any(|(_, x)| x.contains(".ok()")),
        "comments are not code"
    );
}

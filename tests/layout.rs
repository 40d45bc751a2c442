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

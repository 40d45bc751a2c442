//! Fuzzing the decode -> preprocess path with mutated images of every
//! accepted format (a proptest-style harness: seeded, reproducible, each
//! failure saved). ZFVIS_FUZZ_CASES sets the number of cases (`make fuzz`
//! runs 100,000); ZFVIS_FUZZ_DUMP=DIR writes every case there.

use rand::{rngs::StdRng, SeedableRng};
use std::collections::BTreeMap;
use zfvis_core::preprocess::{self, Preprocess};
use zfvis_dev::mutations::{mutate, seeds};

fn cases() -> usize {
    std::env::var("ZFVIS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn mutated_images_decode_or_fail_cleanly() {
    let seeds = seeds();
    for s in &seeds {
        preprocess::decode(&s.bytes)
            .unwrap_or_else(|e| panic!("seed {} does not decode: {e}", s.format));
    }
    let pre = Preprocess {
        input_size: 224,
        resize: 256,
        fit: Default::default(),
        filter: Default::default(),
        mean: preprocess::MEAN,
        std: preprocess::STD,
        bgr: false,
        grey: false,
    };
    let dump = std::env::var("ZFVIS_FUZZ_DUMP")
        .ok()
        .map(std::path::PathBuf::from);
    if let Some(d) = &dump {
        std::fs::create_dir_all(d).unwrap();
    }
    let fails = std::env::temp_dir().join("zfvis-fuzz-failures");
    let mut rng = StdRng::seed_from_u64(20261129);
    // (format, kind) -> (accepted, refused)
    let mut table: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    let mut panics = vec![];
    let n = cases();
    for case in 0..n {
        let seed = &seeds[case % seeds.len()];
        let (kind, bytes) = mutate(&mut rng, &seed.bytes);
        if let Some(d) = &dump {
            std::fs::write(d.join(format!("{case:06}-{}-{kind}", seed.format)), &bytes).unwrap();
        }
        let r = std::panic::catch_unwind(|| {
            preprocess::decode(&bytes).map(|img| {
                let t = pre.tensor(&pre.crop(&img));
                assert_eq!(t.size(), [3, 224, 224]);
                assert!(t.isfinite().all().int64_value(&[]) == 1, "non-finite input");
            })
        });
        if let Some(d) = &dump {
            let line = match &r {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e.to_string().replace(['\n', '\t'], " "),
                Err(_) => "panic".to_string(),
            };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join("zfvis.tsv"))
                .unwrap();
            use std::io::Write;
            writeln!(f, "{case:06}-{}-{kind}\t{line}", seed.format).unwrap();
        }
        let e = table.entry((seed.format, kind)).or_default();
        match r {
            Ok(Ok(())) => e.0 += 1,
            Ok(Err(_)) => e.1 += 1,
            Err(_) => {
                std::fs::create_dir_all(&fails).unwrap();
                let f = fails.join(format!("case-{case}-{}-{kind}", seed.format));
                std::fs::write(&f, &bytes).unwrap();
                panics.push(f.display().to_string());
            }
        }
    }
    eprintln!("{n} cases: format kind accepted refused");
    for ((f, k), (a, r)) in &table {
        eprintln!("{f:5} {k:9} {a:6} {r:6}");
    }
    assert!(
        panics.is_empty(),
        "{} panics; inputs saved: {panics:?}",
        panics.len()
    );
}

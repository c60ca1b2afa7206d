//! Runs every `suites/*.slt` and `suites/wire/*.slt` file in process
//! (through the statement layer, writes included), each against a fresh
//! engine seeded with the fixture (see the crate documentation), and fails
//! listing every suite that failed.

use std::path::PathBuf;

/// Proves every suite passes, and that the suites this crate promises
/// exist (so an emptied folder cannot pass silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suite_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    let mut suites: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let wire = dir.join("wire");
    suites.extend(
        std::fs::read_dir(&wire)
            .unwrap_or_else(|e| panic!("{}: {e}", wire.display()))
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{}: {e}", wire.display())),
    );
    suites.retain(|p| p.extension().is_some_and(|e| e == "slt"));
    suites.sort();
    let names: Vec<String> = suites
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for required in ["basic.slt", "vectors.slt", "writes.slt", "errors.slt"] {
        assert!(
            names.iter().any(|n| n == required),
            "missing suite {required}: {names:?}"
        );
    }
    let mut failures = Vec::new();
    for suite in &suites {
        match valori_sqllogictest::run_suite(suite).await {
            Ok(()) => println!("ok   {}", suite.display()),
            Err(e) => failures.push(format!("FAIL {}:\n{e}", suite.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Proves the in-process runner checks the column types a `query` record
/// declares against the Arrow schema: the right values under wrong type
/// letters fail, naming both, and the right letters pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_column_types_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = dir.path().join("types.slt");
    let write = |types: &str| {
        std::fs::write(
            &suite,
            format!(
                "query {types}\nSELECT id, l2(vec, '[0,0,0]'), 'x' FROM docs WHERE id = 5\n----\n5 5 x\n"
            ),
        )
        .expect("write");
    };
    for wrong in ["TRT", "IIT", "IRI", "IR"] {
        write(wrong);
        let e = valori_sqllogictest::run_suite(&suite)
            .await
            .expect_err(wrong)
            .to_string();
        // The runner marks the differing letters with brackets.
        let plain = e.replace(['[', ']'], "");
        assert!(
            plain.contains(&format!("Expected {wrong}")) && plain.contains("Actual   IRT"),
            "{wrong}: {e}"
        );
    }
    write("IRT");
    valori_sqllogictest::run_suite(&suite).await.expect("IRT");
}

use crate::support::{flow, output, root};

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn replace_block(text: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- {name}:begin -->\n");
    let end = format!("<!-- {name}:end -->");
    let start = text.find(&begin).expect("begin marker") + begin.len();
    let stop = text.find(&end).expect("end marker");
    format!("{}{}{}", &text[..start], body, &text[stop..])
}

/// The README's node catalog and DAG are generated; this fails when they drift. Run with
/// `FLOW_UPDATE_README=1` to rewrite them.
#[test]
fn readme_catalog_and_graph_are_current() {
    let cache = tempfile::tempdir().unwrap();
    let (code, catalog, _) = output(flow(cache.path()).args(["nodes", "--format", "markdown"]));
    assert_eq!(code, 0);
    let (code, mermaid, _) = output(flow(cache.path()).args([
        "graph",
        "recipes/timberlea_kmeans.toml",
        "--format",
        "mermaid",
        "--no-cache",
    ]));
    assert_eq!(code, 0);
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let expected = replace_block(&readme, "nodes", &catalog);
    let expected = replace_block(&expected, "graph", &format!("```mermaid\n{mermaid}```\n"));
    if std::env::var_os("FLOW_UPDATE_README").is_some() {
        std::fs::write(&path, &expected).unwrap();
    } else {
        assert!(
            readme == expected,
            "README.md is out of date: run FLOW_UPDATE_README=1 cargo test readme"
        );
    }
}

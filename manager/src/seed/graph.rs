//! Social graph files: the users and follow edges the social network is seeded with.
//!
//! Two formats, told apart by the first line:
//! - an edge list (DeathStarBench's `datasets/social-graph/*/*.edges`, SNAP's `.txt`): one edge
//!   `a b` per line, ids counted from 0, separated by blanks, tabs or a comma; further columns
//!   (weights, timestamps) are ignored; blank lines and lines starting with `#` or `%` are
//!   comments. The user count comes from the `.nodes` file beside it (DeathStarBench's: one
//!   integer), else the largest id + 1.
//! - MatrixMarket coordinate (`.mtx`, as Network Repository ships `socfb-Reed98.mtx`): a
//!   `%%MatrixMarket` first line, `%` comments, a size line `rows cols entries`, then `i j` per
//!   line counted from 1. Ids are shifted to count from 0, so both formats name the same users.
//!
//! Every error names the file and, for its content, the line.

use std::path::{Path, PathBuf};

/// A parsed graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// Number of users; ids are `0..users`.
    pub users: u64,
    /// Where the user count came from (for logs): `users`, a `.nodes` file, the `.mtx` size line
    /// or the largest id.
    pub users_from: String,
    /// Edges `(a, b)`, in file order, ids from 0.
    pub edges: Vec<(u64, u64)>,
}

/// A graph file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line does not parse or names a user outside the graph.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file as a whole is unusable (no edges, a wrong entry count).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads a graph file; `users` (the config's `seed.users`) overrides the count the file implies,
/// and every id must be below it.
pub fn load(path: &Path, users: Option<u64>) -> Result<Graph, GraphError> {
    let text = read(path)?;
    if text.trim_start().starts_with("%%MatrixMarket") {
        parse_mtx(path, &text, users)
    } else {
        let nodes = nodes_file(path)?;
        parse_edge_list(
            path,
            &text,
            users.map(|u| (u, "seed.users".into())).or(nodes),
        )
    }
}

fn read(path: &Path) -> Result<String, GraphError> {
    std::fs::read_to_string(path).map_err(|source| GraphError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The user count in `<stem>.nodes` beside an edge list, when that file exists.
fn nodes_file(edges: &Path) -> Result<Option<(u64, String)>, GraphError> {
    let p = edges.with_extension("nodes");
    if p == edges || !p.is_file() {
        return Ok(None);
    }
    let text = read(&p)?;
    let first = text.lines().next().unwrap_or("").trim();
    let n = first.parse::<u64>().map_err(|_| GraphError::Line {
        path: p.clone(),
        line: 1,
        message: format!("expected the number of users, found {first:?}"),
    })?;
    Ok(Some((n, p.display().to_string())))
}

/// The first two columns of a data line as ids.
fn pair(fields: &[&str], line: &str) -> Result<(u64, u64), String> {
    if fields.len() < 2 {
        return Err(format!("expected two user ids, found {line:?}"));
    }
    let id = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{s:?} is not a user id (a whole number >= 0) in {line:?}"))
    };
    Ok((id(fields[0])?, id(fields[1])?))
}

fn split(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|f| !f.is_empty())
        .collect()
}

fn is_comment(line: &str) -> bool {
    line.is_empty() || line.starts_with('#') || line.starts_with('%')
}

fn parse_edge_list(
    path: &Path,
    text: &str,
    users: Option<(u64, String)>,
) -> Result<Graph, GraphError> {
    let bad = |line: usize, message: String| GraphError::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut edges = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if is_comment(line) {
            continue;
        }
        edges.push(pair(&split(line), line).map_err(|m| bad(i + 1, m))?);
        lines.push(i + 1);
    }
    let (users, users_from) = match users {
        Some(u) => u,
        None => {
            let max = edges.iter().map(|&(a, b)| a.max(b)).max();
            (max.map_or(0, |m| m + 1), "the largest id + 1".into())
        }
    };
    finish(path, edges, &lines, users, users_from, 0)
}

fn parse_mtx(path: &Path, text: &str, users: Option<u64>) -> Result<Graph, GraphError> {
    let bad = |line: usize, message: String| GraphError::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut size: Option<(u64, u64)> = None;
    let mut edges = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if is_comment(line) {
            continue;
        }
        let fields = split(line);
        let Some((_, declared)) = size else {
            let (rows, cols) =
                pair(&fields, line).map_err(|m| bad(i + 1, format!("size line: {m}")))?;
            let n = fields
                .get(2)
                .and_then(|f| f.parse::<u64>().ok())
                .ok_or_else(|| {
                    bad(
                        i + 1,
                        format!("size line: expected `rows cols entries`, found {line:?}"),
                    )
                })?;
            size = Some((rows.max(cols), n));
            continue;
        };
        let (a, b) = pair(&fields, line).map_err(|m| bad(i + 1, m))?;
        if a == 0 || b == 0 {
            return Err(bad(
                i + 1,
                format!("MatrixMarket ids count from 1, found {line:?}"),
            ));
        }
        if edges.len() as u64 == declared {
            return Err(bad(
                i + 1,
                format!("more entries than the {declared} the size line declares"),
            ));
        }
        edges.push((a - 1, b - 1));
        lines.push(i + 1);
    }
    let Some((n, declared)) = size else {
        return Err(GraphError::File {
            path: path.to_path_buf(),
            message: "MatrixMarket file without a size line".into(),
        });
    };
    if edges.len() as u64 != declared {
        return Err(GraphError::File {
            path: path.to_path_buf(),
            message: format!(
                "the size line declares {declared} entries, the file has {}",
                edges.len()
            ),
        });
    }
    let (users, from) = match users {
        Some(u) => (u, "seed.users".to_string()),
        None => (n, "the size line".to_string()),
    };
    finish(path, edges, &lines, users, from, 1)
}

/// Checks every id against the user count (naming the edge's line) and that there is an edge.
fn finish(
    path: &Path,
    edges: Vec<(u64, u64)>,
    lines: &[usize],
    users: u64,
    users_from: String,
    shown_base: u64,
) -> Result<Graph, GraphError> {
    if edges.is_empty() {
        return Err(GraphError::File {
            path: path.to_path_buf(),
            message: "no edges (every line is blank or a comment)".into(),
        });
    }
    if let Some(i) = edges.iter().position(|&(a, b)| a.max(b) >= users) {
        let (a, b) = edges[i];
        return Err(GraphError::Line {
            path: path.to_path_buf(),
            line: lines[i],
            message: format!(
                "user {} is outside the {users} users (ids {shown_base} to {}; count from {users_from})",
                a.max(b) + shown_base,
                users + shown_base - 1
            ),
        });
    }
    Ok(Graph {
        users,
        users_from,
        edges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn deathstarbench_edges_with_their_nodes_file() {
        let tmp = tempfile::tempdir().unwrap();
        // DeathStarBench's .nodes has no trailing newline.
        write(tmp.path(), "g.nodes", "5");
        let p = write(tmp.path(), "g.edges", "1 0\n3 2\n4\t0\n");
        let g = load(&p, None).unwrap();
        assert_eq!(g.users, 5);
        assert_eq!(g.edges, vec![(1, 0), (3, 2), (4, 0)]);
        assert!(g.users_from.ends_with("g.nodes"), "{}", g.users_from);
        // The config's count wins.
        assert_eq!(load(&p, Some(9)).unwrap().users, 9);
    }

    #[test]
    fn comments_blank_lines_commas_and_extra_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(
            tmp.path(),
            "g.txt",
            "# Directed graph\n% also a comment\n\n0,1\n  2 3 1.5 1700000000\n",
        );
        let g = load(&p, None).unwrap();
        assert_eq!(g.edges, vec![(0, 1), (2, 3)]);
        assert_eq!(g.users, 4);
        assert_eq!(g.users_from, "the largest id + 1");
    }

    #[test]
    fn bad_lines_are_named_with_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(tmp.path(), "g.edges", "0 1\n# c\n2 x\n");
        let e = load(&p, None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:3: \"x\" is not a user id (a whole number >= 0) in \"2 x\"",
                p.display()
            )
        );
        let p = write(tmp.path(), "h.edges", "0 1\n7\n");
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.ends_with("h.edges:2: expected two user ids, found \"7\""),
            "{e}"
        );
        let p = write(tmp.path(), "i.edges", "0 1\n-1 2\n");
        assert!(load(&p, None)
            .unwrap_err()
            .to_string()
            .contains("i.edges:2:"));
    }

    #[test]
    fn ids_beyond_the_user_count_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "g.nodes", "3\n");
        let p = write(tmp.path(), "g.edges", "0 1\n1 2\n2 3\n");
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("g.edges:3: user 3 is outside the 3 users (ids 0 to 2"),
            "{e}"
        );
        write(tmp.path(), "bad.nodes", "many\n");
        let p = write(tmp.path(), "bad.edges", "0 1\n");
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("bad.nodes:1: expected the number of users"),
            "{e}"
        );
    }

    #[test]
    fn empty_graph_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(tmp.path(), "g.edges", "# nothing\n\n");
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.ends_with("g.edges: no edges (every line is blank or a comment)"),
            "{e}"
        );
        let e = load(&tmp.path().join("absent.edges"), None).unwrap_err();
        assert!(matches!(e, GraphError::Read { .. }), "{e}");
    }

    #[test]
    fn matrix_market_counts_from_one() {
        let tmp = tempfile::tempdir().unwrap();
        let text =
            "%%MatrixMarket matrix coordinate pattern symmetric\n% Reed98\n4 4 3\n2 1\n3 1\n4 2\n";
        let p = write(tmp.path(), "g.mtx", text);
        let g = load(&p, None).unwrap();
        assert_eq!(g.users, 4);
        assert_eq!(g.users_from, "the size line");
        assert_eq!(g.edges, vec![(1, 0), (2, 0), (3, 1)]);
    }

    #[test]
    fn matrix_market_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let head = "%%MatrixMarket matrix coordinate pattern symmetric\n";
        let p = write(tmp.path(), "a.mtx", &format!("{head}4 4 2\n2 1\n0 1\n"));
        let e = load(&p, None).unwrap_err().to_string();
        assert!(e.contains("a.mtx:4: MatrixMarket ids count from 1"), "{e}");
        let p = write(tmp.path(), "b.mtx", &format!("{head}4 4 3\n2 1\n"));
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.ends_with("the size line declares 3 entries, the file has 1"),
            "{e}"
        );
        let p = write(tmp.path(), "c.mtx", &format!("{head}4 4 1\n2 1\n3 1\n"));
        let e = load(&p, None).unwrap_err().to_string();
        assert!(e.contains("c.mtx:4: more entries than the 1"), "{e}");
        let p = write(tmp.path(), "d.mtx", &format!("{head}4 4\n"));
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("d.mtx:2: size line: expected `rows cols entries`"),
            "{e}"
        );
        let p = write(tmp.path(), "e.mtx", &format!("{head}3 3 1\n4 1\n"));
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("e.mtx:3: user 4 is outside the 3 users (ids 1 to 3"),
            "{e}"
        );
    }
}

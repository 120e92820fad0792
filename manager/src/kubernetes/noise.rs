//! What else the app's nodes were doing while a case was measured, on Kubernetes: the case's
//! `other_cpu_cores`, the counterpart of the local backend's host sampler.
//!
//! There is no sampler on the nodes, so the figure comes from Prometheus: the busy CPU of the
//! nodes the app's pods ran on (node exporter) minus the CPU our own pods used there (cAdvisor:
//! the app's, the stressors' and the load generators' namespaces). What is left is other
//! tenants, system daemons, the kubelet: the noise the case was measured in, which
//! `validity.max_other_cpu` bounds. Both queries are templates the user can replace
//! (`collect.prometheus.noise`), since label conventions differ between monitoring stacks.

use aefm_collector::prometheus::{
    render, PrometheusClient, QueryKind, QueryTemplate, Series, TemplateContext,
};
use aefm_collector::Window;

use crate::config::schema::{NoiseQueries, PrometheusConfig};

/// An anchored-by-Prometheus alternation of exact names (pods, nodes, namespaces), with every
/// character that is not alphanumeric or `-` escaped for a PromQL string literal; `.+` when
/// there are none.
pub fn names_regex<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut parts: Vec<String> = names
        .into_iter()
        .map(|n| {
            n.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c.to_string()
                    } else {
                        format!("\\\\{c}")
                    }
                })
                .collect()
        })
        .collect();
    parts.sort();
    parts.dedup();
    if parts.is_empty() {
        ".+".into()
    } else {
        parts.join("|")
    }
}

/// The case's `other_cpu_cores`: `host_cpu` minus `ours_cpu`, both instant queries at the
/// window's end over the window, never below 0. `tctx` carries `nodes` and `namespaces` in its
/// extra variables. An error says why the figure could not be had (a query failed, or returned
/// nothing: no node exporter or cAdvisor data for those nodes, or a window shorter than two
/// scrapes; or `host_cpu` answered per node and one of `nodes` is missing: its CPU would count
/// as idle).
pub fn measure(
    prom: &PrometheusConfig,
    queries: &NoiseQueries,
    tctx: &TemplateContext,
    window: &Window,
    nodes: &[&str],
) -> Result<f64, String> {
    let client = PrometheusClient::new(&prom.url, Default::default()).map_err(|e| e.to_string())?;
    let one = |name: &str, promql: &str| -> Result<f64, String> {
        let template = QueryTemplate {
            name: format!("noise.{name}"),
            promql: promql.to_string(),
            kind: QueryKind::Instant,
        };
        let query =
            render(&template, tctx, window, prom.step, prom.step * 2).map_err(|e| e.to_string())?;
        let series = client
            .instant(&query, window.end, window)
            .map_err(|e| format!("collect.prometheus.noise.{name}: {e}"))?;
        let covered = match name {
            "host_cpu" => every_node(&series, nodes),
            _ => Ok(()),
        };
        covered
            .and_then(|()| single_value(&series))
            .map_err(|why| format!("collect.prometheus.noise.{name} ({query}) {why}"))
    };
    let host = one("host_cpu", &queries.host_cpu)?;
    let ours = one("ours_cpu", &queries.ours_cpu)?;
    Ok((host - ours).max(0.0))
}

/// When the series are per node (a `nodename` or `node` label on each), every node of the case
/// must have one: a node without data would pass as idle and hide its noise.
fn every_node(series: &[Series], nodes: &[&str]) -> Result<(), String> {
    let node_of = |s: &Series| {
        s.labels
            .get("nodename")
            .or_else(|| s.labels.get("node"))
            .cloned()
    };
    let Some(seen) = series.iter().map(node_of).collect::<Option<Vec<String>>>() else {
        return Ok(());
    };
    let missing: Vec<&str> = nodes
        .iter()
        .copied()
        .filter(|n| !seen.iter().any(|s| s == n))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "has no data for node(s) {} (no node exporter there, or its nodename is not the node's name)",
            missing.join(", ")
        ))
    }
}

/// The one number a noise query must give: the sum of its series' last samples. No series (or
/// only NaN) is an error, not a 0: it means the data is not there, and a missing figure must
/// not pass as a quiet host.
fn single_value(series: &[Series]) -> Result<f64, String> {
    let values: Vec<f64> = series
        .iter()
        .filter_map(|s| s.samples.last().map(|&(_, v)| v))
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return Err("returned no value: no data for these nodes in the window".into());
    }
    Ok(values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aefm_collector::output::Labels;

    #[test]
    fn names_become_an_escaped_sorted_alternation() {
        assert_eq!(names_regex(["w3", "w2", "w2"]), "w2|w3");
        assert_eq!(
            names_regex(["ip-10-0-0-1.ec2.internal"]),
            "ip-10-0-0-1\\\\.ec2\\\\.internal"
        );
        assert_eq!(names_regex(std::iter::empty()), ".+");
    }

    fn series(values: &[f64]) -> Vec<Series> {
        values
            .iter()
            .map(|&v| Series {
                labels: Labels::new(),
                samples: vec![(1.0, v)],
            })
            .collect()
    }

    fn on_node(node: &str, v: f64) -> Series {
        Series {
            labels: [("nodename".to_string(), node.to_string())].into(),
            samples: vec![(1.0, v)],
        }
    }

    #[test]
    fn per_node_answers_must_cover_every_node() {
        let both = [on_node("w2", 1.0), on_node("w3", 0.5)];
        assert!(every_node(&both, &["w2", "w3"]).is_ok());
        let e = every_node(&both[..1], &["w2", "w3"]).unwrap_err();
        assert!(e.contains("no data for node(s) w3"), "{e}");
        // A single unlabelled sum cannot be checked per node: taken as it is.
        assert!(every_node(&series(&[1.5]), &["w2", "w3"]).is_ok());
    }

    #[test]
    fn a_noise_query_must_return_a_number() {
        assert_eq!(single_value(&series(&[1.25, 0.5])).unwrap(), 1.75);
        assert!(single_value(&series(&[])).unwrap_err().contains("no value"));
        assert!(single_value(&series(&[f64::NAN])).is_err());
    }

    #[test]
    fn the_default_queries_render_with_the_case_scope() {
        let q = NoiseQueries::default();
        let tctx = TemplateContext {
            extra: [
                ("nodes".to_string(), names_regex(["w2", "w3"])),
                (
                    "namespaces".to_string(),
                    names_regex(["hotel", "aefm-interference"]),
                ),
            ]
            .into(),
            ..Default::default()
        };
        let now = std::time::SystemTime::now();
        let w = Window {
            start: now - std::time::Duration::from_secs(60),
            end: now,
        };
        let step = std::time::Duration::from_secs(5);
        let t = |p: &str| QueryTemplate {
            name: "n".into(),
            promql: p.into(),
            kind: QueryKind::Instant,
        };
        let host = render(&t(&q.host_cpu), &tctx, &w, step, step).unwrap();
        assert!(
            host.contains(r#"nodename=~"w2|w3""#) && host.contains("[60s]"),
            "{host}"
        );
        let ours = render(&t(&q.ours_cpu), &tctx, &w, step, step).unwrap();
        assert!(
            ours.contains(r#"namespace=~"aefm-interference|hotel",node=~"w2|w3""#),
            "{ours}"
        );
    }
}

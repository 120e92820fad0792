//! Arguments and bodies of the Kubernetes subcommands `aefm clean` and `aefm auto-config`, so the
//! binary's dispatch stays one line per arm.

use std::path::PathBuf;

use clap::Args;

use super::autoconfig::Answers;

/// `aefm clean [EXPERIMENT]`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Experiment whose objects to delete; without it (and without --config), everything AEFM
    /// manages on the cluster.
    pub experiment: Option<String>,
    /// Take the experiment name, kubeconfig and context from this config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
    /// Also delete the namespaces AEFM created for the experiment (only those it created:
    /// namespaces that existed before are never deleted).
    #[arg(long)]
    pub namespaces: bool,
}

/// `aefm doctor CONFIG`: checks the cluster for the experiment before any load.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The experiment's config file (its `kubernetes:` section); not needed with --print-rbac.
    #[arg(required_unless_present = "print_rbac")]
    pub config: Option<PathBuf>,
    /// First pull the stress and load images on the nodes that run them (one Job per node).
    #[arg(long)]
    pub pre_pull: bool,
    /// Print the ClusterRole, ServiceAccount and binding AEFM needs (deploy/rbac.yaml) and exit.
    #[arg(long)]
    pub print_rbac: bool,
    /// Namespace of the ServiceAccount in --print-rbac's output.
    #[arg(long, default_value = "default")]
    pub rbac_namespace: String,
}

/// `aefm auto-config`: every question has a flag; `-i` asks the missing ones on stdin.
#[derive(Debug, Args)]
pub struct AutoConfigArgs {
    /// Ask for every answer not given as a flag.
    #[arg(short, long)]
    pub interactive: bool,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
    /// Experiment name (default `experiment`).
    #[arg(long)]
    pub name: Option<String>,
    /// Application namespace (default `aefm-app`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// YAML repository with infra/ and under_test/ (default `yaml_repo`).
    #[arg(long)]
    pub yaml_repo: Option<String>,
    /// Image replacing APP_IMG.
    #[arg(long)]
    pub app_image: Option<String>,
    /// Infra nodes, comma-separated (default: the first worker).
    #[arg(long, value_delimiter = ',')]
    pub infra: Option<Vec<String>>,
    /// Testbed nodes, comma-separated (default: the other workers).
    #[arg(long, value_delimiter = ',')]
    pub testbed: Option<Vec<String>>,
    /// Load-generator nodes, comma-separated (default: the last worker when there are 4 or more).
    #[arg(long, value_delimiter = ',')]
    pub loadgen: Option<Vec<String>>,
    /// Host or IP NodePorts are reached through (default: the first infra node's InternalIP).
    #[arg(long)]
    pub host: Option<String>,
    /// Prometheus URL (default: found in the cluster).
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Jaeger query URL (default: found in the cluster).
    #[arg(long)]
    pub jaeger: Option<String>,
    /// Jaeger entrance service (default `frontend`).
    #[arg(long)]
    pub jaeger_service: Option<String>,
    /// URL the load is sent to.
    #[arg(long)]
    pub url: Option<String>,
    /// Where to write the config (default `<name>.yaml`; `-` prints it).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

type Res = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs `aefm doctor`: prints each finding; fails when any is an error.
pub fn doctor(a: DoctorArgs) -> Res {
    if a.print_rbac {
        print!("{}", super::rbac::cluster_role_yaml(&a.rbac_namespace));
        return Ok(());
    }
    let path = a.config.as_deref().ok_or("a config file is needed")?;
    let cfg = crate::config::Config::load(path)?;
    let findings = super::doctor(&cfg, a.pre_pull)?;
    for f in &findings {
        println!("{f}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == super::doctor::Severity::Error)
        .count();
    if errors > 0 {
        return Err(format!(
            "{errors} problem(s) would fail or falsify the run (warnings: {})",
            findings.len() - errors
        )
        .into());
    }
    println!(
        "ok: the cluster is ready for {} ({} warning(s))",
        cfg.name,
        findings.len()
    );
    Ok(())
}

/// Runs `aefm clean`.
pub fn clean(a: CleanArgs) -> Res {
    let (mut experiment, mut kubeconfig, mut context) = (a.experiment, a.kubeconfig, a.context);
    if let Some(path) = &a.config {
        let cfg = crate::config::Config::load(path)?;
        experiment = experiment.or(Some(cfg.name.clone()));
        if let Some(k) = &cfg.kubernetes {
            let k = super::resolved(k, &cfg.base_dir);
            kubeconfig = kubeconfig.or(k.kubeconfig);
            context = context.or(k.context);
        }
    }
    let opts = super::cleanup::CleanOptions {
        namespaces: a.namespaces,
    };
    let cleaned = super::clean(
        kubeconfig.as_deref(),
        context.as_deref(),
        experiment.as_deref(),
        opts,
    )?;
    for o in &cleaned.deleted {
        println!("deleted {o}");
    }
    for k in &cleaned.skipped {
        eprintln!("aefm clean: not looked at: {k}");
    }
    println!(
        "{} object(s) of {} deleted",
        cleaned.deleted.len(),
        experiment
            .map(|e| format!("experiment {e}"))
            .unwrap_or_else(|| "every AEFM experiment".into())
    );
    Ok(())
}

/// Runs `aefm auto-config`.
pub fn auto_config(a: AutoConfigArgs) -> Res {
    let answers = Answers {
        name: a.name,
        namespace: a.namespace,
        yaml_repo: a.yaml_repo,
        app_image: a.app_image,
        infra: a.infra,
        testbed: a.testbed,
        loadgen: a.loadgen,
        host: a.host,
        prometheus: a.prometheus,
        jaeger: a.jaeger,
        jaeger_service: a.jaeger_service,
        url: a.url,
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut stderr = std::io::stderr();
    let interactive: Option<(&mut dyn std::io::BufRead, &mut dyn std::io::Write)> = if a.interactive
    {
        Some((&mut input, &mut stderr))
    } else {
        None
    };
    let (info, proposal) = super::auto_config(
        a.kubeconfig.as_deref(),
        a.context.as_deref(),
        answers,
        interactive,
    )?;
    let text = super::autoconfig::render_config(&proposal);
    let out = a
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", proposal.name)));
    eprintln!(
        "{} nodes ({} workers, homogeneous: {}); Prometheus: {}; Jaeger: {}",
        info.nodes.len(),
        info.workers().len(),
        proposal.homogeneous,
        proposal.prometheus.as_deref().unwrap_or("not found"),
        proposal.jaeger.as_deref().unwrap_or("not found")
    );
    if out.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    if out.exists() && !a.force {
        return Err(format!("{} exists; use --force to overwrite", out.display()).into());
    }
    std::fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("config written to {}", out.display());
    Ok(())
}

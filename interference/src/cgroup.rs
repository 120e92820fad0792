//! What this process may use: the memory limit (cgroup v2 `memory.max`, then v1
//! `memory.limit_in_bytes`, then the host's `MemTotal`), the CPU quota (`cpu.max` or
//! `cpu.cfs_quota_us`/`cpu.cfs_period_us`) and the CPUs it may run on (affinity mask, which the
//! kernel derives from the cpuset).
//!
//! Files are read under a root path (`/` in production, a fixture tree in tests). The process's own
//! cgroup is found from `/proc/self/cgroup`; with a cgroup namespace, or in a container whose
//! cgroup is mounted at the root of `/sys/fs/cgroup`, that path does not exist under the mount, so
//! the lookup strips leading components until it finds a directory, then takes the smallest limit
//! from there up to the mount root (limits are hierarchical).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// cgroup v1 reports "unlimited" as a huge page-aligned number (2^63 - 4096 on x86-64); anything
/// above 2^62 is treated as no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// The memory a process may fill and where that figure comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryLimit {
    /// Bytes.
    pub bytes: u64,
    /// The file the limit was read from (or `/proc/meminfo MemTotal` when no cgroup limits).
    pub source: String,
    /// True when a cgroup limit applies (false: host memory).
    pub cgroup: bool,
}

/// A CPU bandwidth quota in cores (`cpu.max` 50000 100000 = 0.5 cores).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuQuota {
    /// Cores' worth of CPU time per period.
    pub cores: f64,
    /// The file it came from.
    pub source: String,
}

/// The process's cgroup paths from `/proc/self/cgroup`: (controllers, path) per line.
fn self_cgroups(root: &Path) -> Vec<(String, String)> {
    let p = root.join("proc/self/cgroup");
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?.to_string();
            let path = it.next()?.to_string();
            Some((ctrls, path))
        })
        .collect()
}

fn cgroup_mount(root: &Path) -> PathBuf {
    root.join("sys/fs/cgroup")
}

/// True for a cgroup v2 (unified) hierarchy mounted at `/sys/fs/cgroup`.
pub fn is_v2(root: &Path) -> bool {
    cgroup_mount(root).join("cgroup.controllers").exists()
}

/// The v1 mount directory of `controller` (`memory`, or a combined one such as `cpu,cpuacct`).
fn v1_mount(root: &Path, controller: &str) -> Option<PathBuf> {
    let base = cgroup_mount(root);
    let direct = base.join(controller);
    if direct.is_dir() {
        return Some(direct);
    }
    std::fs::read_dir(&base)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.split(',').any(|c| c == controller))
        })
}

/// The contents of `file` from the process's cgroup directory up to the mount root, nearest first.
fn walk(mount: &Path, cg_path: &str, file: &str) -> Vec<(PathBuf, String)> {
    let comps: Vec<&str> = cg_path
        .split('/')
        .filter(|c| !c.is_empty() && *c != "..")
        .collect();
    // Find the deepest existing directory for this path (strip leading components: namespaces).
    let mut start = mount.to_path_buf();
    for skip in 0..=comps.len() {
        let candidate = comps[skip..]
            .iter()
            .fold(mount.to_path_buf(), |p, c| p.join(c));
        if candidate.is_dir() {
            start = candidate;
            break;
        }
    }
    let mut out = Vec::new();
    let mut dir = start.as_path();
    loop {
        let f = dir.join(file);
        if let Ok(text) = std::fs::read_to_string(&f) {
            out.push((f, text.trim().to_string()));
        }
        if dir == mount {
            break;
        }
        match dir.parent() {
            Some(p) if p.starts_with(mount) => dir = p,
            _ => break,
        }
    }
    out
}

fn path_for(cgroups: &[(String, String)], v2: bool, controller: &str) -> String {
    cgroups
        .iter()
        .find(|(ctrls, _)| {
            if v2 {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == controller)
            }
        })
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| "/".into())
}

/// `MemTotal` of `/proc/meminfo` in bytes.
pub fn mem_total(root: &Path) -> Result<u64> {
    let p = root.join("proc/meminfo");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::file(&p, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| Error::file(&p, "no parsable MemTotal line"))
}

/// The memory limit of this process: the smallest cgroup limit on its path (v2, then v1), else the
/// host's memory.
pub fn memory_limit(root: &Path) -> Result<MemoryLimit> {
    let cgroups = self_cgroups(root);
    let candidates = if is_v2(root) {
        let path = path_for(&cgroups, true, "memory");
        walk(&cgroup_mount(root), &path, "memory.max")
    } else if let Some(mount) = v1_mount(root, "memory") {
        let path = path_for(&cgroups, false, "memory");
        walk(&mount, &path, "memory.limit_in_bytes")
    } else {
        Vec::new()
    };
    let mut best: Option<MemoryLimit> = None;
    for (file, text) in candidates {
        if text == "max" {
            continue;
        }
        let bytes: u64 = text
            .parse()
            .map_err(|_| Error::file(&file, format!("cannot parse limit {text:?}")))?;
        if bytes >= V1_UNLIMITED {
            continue;
        }
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(MemoryLimit {
                bytes,
                source: file.display().to_string(),
                cgroup: true,
            });
        }
    }
    let host = mem_total(root)?;
    Ok(match best {
        Some(b) if b.bytes <= host => b,
        _ => MemoryLimit {
            bytes: host,
            source: "/proc/meminfo MemTotal".into(),
            cgroup: false,
        },
    })
}

/// The CPU quota of this process in cores, if its cgroup (or an ancestor) has one.
pub fn cpu_quota(root: &Path) -> Option<CpuQuota> {
    let cgroups = self_cgroups(root);
    let mut best: Option<CpuQuota> = None;
    let mut consider = |cores: f64, source: &Path| {
        if cores > 0.0 && best.as_ref().is_none_or(|b| cores < b.cores) {
            best = Some(CpuQuota {
                cores,
                source: source.display().to_string(),
            });
        }
    };
    if is_v2(root) {
        let path = path_for(&cgroups, true, "cpu");
        for (file, text) in walk(&cgroup_mount(root), &path, "cpu.max") {
            let mut it = text.split_whitespace();
            let (Some(q), Some(p)) = (it.next(), it.next()) else {
                continue;
            };
            if let (Ok(q), Ok(p)) = (q.parse::<f64>(), p.parse::<f64>()) {
                consider(q / p, &file);
            }
        }
    } else if let Some(mount) = v1_mount(root, "cpu") {
        let path = path_for(&cgroups, false, "cpu");
        let quotas = walk(&mount, &path, "cpu.cfs_quota_us");
        let periods = walk(&mount, &path, "cpu.cfs_period_us");
        for ((file, q), (pfile, p)) in quotas.iter().zip(periods.iter()) {
            if file.parent() != pfile.parent() {
                continue;
            }
            if let (Ok(q), Ok(p)) = (q.parse::<f64>(), p.parse::<f64>()) {
                if q > 0.0 && p > 0.0 {
                    consider(q / p, file);
                }
            }
        }
    }
    best
}

/// The CPUs this process may run on (`sched_getaffinity`, which reflects the cpuset).
pub fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(Error::sys("sched_getaffinity"));
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    // SAFETY: as above; pid 0 means the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(Error::sys(format!("sched_setaffinity(cpu {cpu})")));
        }
    }
    Ok(())
}

/// The CPU budget: allowed CPUs and the quota, and the number of busy workers they support
/// (`min(allowed, ceil(quota))`, at least 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuBudget {
    /// CPUs in the affinity mask.
    pub allowed: Vec<usize>,
    /// The CFS quota, if any.
    pub quota: Option<CpuQuota>,
    /// Workers that can run at 100 % at once.
    pub effective: usize,
}

/// Reads the CPU budget of this process.
pub fn cpu_budget(root: &Path) -> Result<CpuBudget> {
    let allowed = allowed_cpus()?;
    let quota = cpu_quota(root);
    let mut effective = allowed.len().max(1);
    if let Some(q) = &quota {
        effective = effective.min(q.cores.ceil().max(1.0) as usize);
    }
    Ok(CpuBudget {
        allowed,
        quota,
        effective,
    })
}

/// Resident set size of this process in bytes (`/proc/self/statm`).
pub fn self_rss() -> u64 {
    let page = page_size();
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|p| p * page)
        .unwrap_or(0)
}

/// The system page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn meminfo(root: &Path) {
        write(
            root,
            "proc/meminfo",
            "MemTotal:       24684084 kB\nMemFree:  1000 kB\n",
        );
    }

    #[test]
    fn v2_nested_limit_takes_the_smallest() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        meminfo(r);
        write(r, "proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
        write(r, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        write(r, "sys/fs/cgroup/kubepods/memory.max", "max\n");
        write(r, "sys/fs/cgroup/kubepods/pod1/memory.max", "2147483648\n");
        write(r, "sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n");
        write(
            r,
            "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max",
            "50000 100000\n",
        );
        write(r, "sys/fs/cgroup/kubepods/cpu.max", "max 100000\n");
        let m = memory_limit(r).unwrap();
        assert_eq!(m.bytes, 2 << 30);
        assert!(
            m.cgroup && m.source.ends_with("kubepods/pod1/memory.max"),
            "{m:?}"
        );
        let q = cpu_quota(r).unwrap();
        assert!((q.cores - 0.5).abs() < 1e-9);
    }

    #[test]
    fn v2_namespace_root_and_unlimited() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        meminfo(r);
        // cgroup namespace: /proc/self/cgroup says "/", files at the mount root.
        write(r, "proc/self/cgroup", "0::/\n");
        write(r, "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(r, "sys/fs/cgroup/memory.max", "1073741824\n");
        assert_eq!(memory_limit(r).unwrap().bytes, 1 << 30);
        write(r, "sys/fs/cgroup/memory.max", "max\n");
        let m = memory_limit(r).unwrap();
        assert_eq!((m.bytes, m.cgroup), (24684084 * 1024, false));
        assert!(cpu_quota(r).is_none());
    }

    #[test]
    fn v1_container_without_namespace() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        meminfo(r);
        // Docker on cgroup v1: the path names the host's cgroup, the mount shows the container's.
        write(
            r,
            "proc/self/cgroup",
            "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n",
        );
        write(
            r,
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "536870912\n",
        );
        write(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "150000\n");
        write(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        let m = memory_limit(r).unwrap();
        assert_eq!(m.bytes, 512 << 20);
        assert!(m.source.ends_with("memory/memory.limit_in_bytes"));
        assert!((cpu_quota(r).unwrap().cores - 1.5).abs() < 1e-9);
    }

    #[test]
    fn v1_unlimited_falls_back_to_meminfo() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        meminfo(r);
        write(r, "proc/self/cgroup", "4:memory:/process_api/x\n");
        write(
            r,
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            r,
            "sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(r, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
        write(r, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
        let m = memory_limit(r).unwrap();
        assert_eq!(m.bytes, 24684084 * 1024);
        assert_eq!(m.source, "/proc/meminfo MemTotal");
        assert!(cpu_quota(r).is_none());
    }

    #[test]
    fn garbage_limit_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        meminfo(r);
        write(r, "proc/self/cgroup", "0::/\n");
        write(r, "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(r, "sys/fs/cgroup/memory.max", "lots\n");
        let e = memory_limit(r).unwrap_err().to_string();
        assert!(e.contains("memory.max") && e.contains("lots"), "{e}");
        let t2 = tempfile::tempdir().unwrap();
        assert!(memory_limit(t2.path())
            .unwrap_err()
            .to_string()
            .contains("meminfo"));
    }

    #[test]
    fn affinity_and_budget() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let b = cpu_budget(Path::new("/")).unwrap();
        assert!(b.effective >= 1 && b.effective <= cpus.len());
        assert!(self_rss() > 0);
    }
}

//! Cache geometry from sysfs (`/sys/devices/system/cpu/cpuN/cache/index*/`): every level and type
//! read as the kernel states it, so L1d is found by `level == 1 && type == Data`, never by assuming
//! that `index1` is the L1d (on x86 it is the L1 instruction cache).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// The kind of cache as sysfs names it (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CacheType {
    /// Data only (L1d).
    Data,
    /// Instructions only (L1i).
    Instruction,
    /// Data and instructions (L2, L3 on most parts).
    Unified,
}

/// One cache of one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheInfo {
    /// The sysfs directory name, e.g. `index0`.
    pub index: String,
    /// 1, 2, 3, ...
    pub level: u32,
    /// Data, instruction or unified.
    pub kind: CacheType,
    /// Size in bytes (sysfs gives `48K`, parsed with its suffix).
    pub size: u64,
    /// Line size in bytes (64 when sysfs does not say).
    pub line_size: u64,
    /// Associativity, when sysfs says.
    pub ways: Option<u32>,
    /// CPUs sharing this cache (`shared_cpu_list`), when sysfs says.
    pub shared_cpu_list: Option<String>,
}

/// The cache level a cache stressor targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
pub enum CacheLevel {
    /// Level-1 data cache.
    L1d,
    /// Level-2 (data or unified) cache.
    L2,
    /// The last-level data or unified cache (highest level present).
    Llc,
}

impl CacheLevel {
    /// The command-line name (`l1d`, `l2`, `llc`).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheLevel::L1d => "l1d",
            CacheLevel::L2 => "l2",
            CacheLevel::Llc => "llc",
        }
    }

    /// Parses `l1d`, `l2`, `llc` (also `l3` as an alias of the last level).
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "l1d" | "l1" => Ok(CacheLevel::L1d),
            "l2" => Ok(CacheLevel::L2),
            "llc" | "l3" => Ok(CacheLevel::Llc),
            _ => Err(Error::parse(
                "cache level",
                text,
                "valid levels: l1d, l2, llc",
            )),
        }
    }
}

/// Parses a sysfs cache size (`48K`, `1024K`, `32M`, `32768`) into bytes.
pub fn parse_sysfs_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 1024),
        'M' | 'm' => (&t[..t.len() - 1], 1024 * 1024),
        'G' | 'g' => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

fn read_trim(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::file(path, e))
}

/// Directory of the caches of `cpu` under a sysfs root (`/` in production, a fixture tree in tests).
pub fn cache_dir(root: &Path, cpu: usize) -> PathBuf {
    root.join(format!("sys/devices/system/cpu/cpu{cpu}/cache"))
}

/// Reads every cache of `cpu`, sorted by level then type.
pub fn read_caches(root: &Path, cpu: usize) -> Result<Vec<CacheInfo>> {
    let dir = cache_dir(root, cpu);
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::file(&dir, e))?;
    let mut caches = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(&dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("index") {
            continue;
        }
        let p = entry.path();
        let level_path = p.join("level");
        let level: u32 = read_trim(&level_path)?
            .parse()
            .map_err(|_| Error::file(&level_path, "level is not a number"))?;
        let type_path = p.join("type");
        let kind = match read_trim(&type_path)?.as_str() {
            "Data" => CacheType::Data,
            "Instruction" => CacheType::Instruction,
            "Unified" => CacheType::Unified,
            other => {
                return Err(Error::file(
                    &type_path,
                    format!("unknown cache type {other:?}"),
                ))
            }
        };
        let size_path = p.join("size");
        let size_text = read_trim(&size_path)?;
        let size = parse_sysfs_size(&size_text)
            .filter(|s| *s > 0)
            .ok_or_else(|| Error::file(&size_path, format!("cannot parse size {size_text:?}")))?;
        let line_size = read_trim(&p.join("coherency_line_size"))
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|l: &u64| *l > 0 && l.is_power_of_two())
            .unwrap_or(64);
        let ways = read_trim(&p.join("ways_of_associativity"))
            .ok()
            .and_then(|s| s.parse().ok());
        let shared_cpu_list = read_trim(&p.join("shared_cpu_list")).ok();
        caches.push(CacheInfo {
            index: name,
            level,
            kind,
            size,
            line_size,
            ways,
            shared_cpu_list,
        });
    }
    if caches.is_empty() {
        return Err(Error::file(&dir, "no index* cache entries"));
    }
    caches.sort_by_key(|c| (c.level, c.kind as u8, c.index.clone()));
    Ok(caches)
}

/// Picks the cache a level means: L1d = level 1 Data (or Unified), L2 = level 2 Data/Unified,
/// LLC = the highest level that holds data.
pub fn select(caches: &[CacheInfo], level: CacheLevel) -> Option<&CacheInfo> {
    let holds_data = |c: &&CacheInfo| c.kind != CacheType::Instruction;
    match level {
        CacheLevel::L1d => caches
            .iter()
            .filter(|c| c.level == 1)
            .filter(holds_data)
            .min_by_key(|c| c.kind != CacheType::Data),
        CacheLevel::L2 => caches.iter().filter(|c| c.level == 2).find(holds_data),
        CacheLevel::Llc => caches.iter().filter(holds_data).max_by_key(|c| c.level),
    }
}

/// The last-level cache size of `cpu`, or 32 MiB (a large current server LLC slice) when sysfs has
/// no cache information (some VMs and containers hide it): working sets sized from it stay large.
pub fn llc_size_or_default(root: &Path, cpu: usize) -> u64 {
    read_caches(root, cpu)
        .ok()
        .and_then(|c| select(&c, CacheLevel::Llc).map(|c| c.size))
        .unwrap_or(32 << 20)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a fake `cpuN/cache` tree; entries are (index, level, type, size).
    pub(crate) fn fixture(root: &Path, cpu: usize, entries: &[(&str, &str, &str, &str)]) {
        let dir = cache_dir(root, cpu);
        for (index, level, kind, size) in entries {
            let d = dir.join(index);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("level"), format!("{level}\n")).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
            std::fs::write(d.join("coherency_line_size"), "64\n").unwrap();
        }
        std::fs::write(dir.join("uevent"), "").unwrap();
    }

    #[test]
    fn x86_layout_l1d_is_not_index1() {
        let t = tempfile::tempdir().unwrap();
        fixture(
            t.path(),
            0,
            &[
                ("index0", "1", "Data", "48K"),
                ("index1", "1", "Instruction", "32K"),
                ("index2", "2", "Unified", "1024K"),
                ("index3", "3", "Unified", "32768K"),
            ],
        );
        let c = read_caches(t.path(), 0).unwrap();
        assert_eq!(c.len(), 4);
        let l1d = select(&c, CacheLevel::L1d).unwrap();
        assert_eq!((l1d.index.as_str(), l1d.size), ("index0", 48 * 1024));
        assert_eq!(select(&c, CacheLevel::L2).unwrap().size, 1 << 20);
        assert_eq!(select(&c, CacheLevel::Llc).unwrap().size, 32 << 20);
        assert_eq!(llc_size_or_default(t.path(), 0), 32 << 20);
    }

    #[test]
    fn reordered_indices_and_no_l3() {
        let t = tempfile::tempdir().unwrap();
        // Instruction cache first, data second: selection must follow `type`, not the index.
        fixture(
            t.path(),
            3,
            &[
                ("index0", "1", "Instruction", "64K"),
                ("index1", "1", "Data", "32K"),
                ("index2", "2", "Unified", "2M"),
            ],
        );
        let c = read_caches(t.path(), 3).unwrap();
        assert_eq!(select(&c, CacheLevel::L1d).unwrap().size, 32 * 1024);
        assert_eq!(select(&c, CacheLevel::Llc).unwrap().size, 2 << 20);
    }

    #[test]
    fn errors_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        fixture(t.path(), 0, &[("index0", "1", "Data", "lots")]);
        let e = read_caches(t.path(), 0).unwrap_err().to_string();
        assert!(e.contains("index0/size") && e.contains("lots"), "{e}");
        let e = read_caches(t.path(), 7).unwrap_err().to_string();
        assert!(e.contains("cpu7/cache"), "{e}");
        assert_eq!(llc_size_or_default(t.path(), 7), 32 << 20);
    }

    #[test]
    fn sysfs_sizes() {
        assert_eq!(parse_sysfs_size("48K"), Some(49152));
        assert_eq!(parse_sysfs_size("32M"), Some(32 << 20));
        assert_eq!(parse_sysfs_size("512"), Some(512));
        assert_eq!(parse_sysfs_size("K"), None);
    }

    #[test]
    fn levels_parse() {
        assert_eq!(CacheLevel::parse("L1d").unwrap(), CacheLevel::L1d);
        assert_eq!(CacheLevel::parse("l3").unwrap(), CacheLevel::Llc);
        assert!(CacheLevel::parse("l4")
            .unwrap_err()
            .to_string()
            .contains("l1d, l2, llc"));
    }
}

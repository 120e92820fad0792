use std::io;

use super::*;

/// Deterministic bytes that look like rows (so a misplaced block shows in a diff).
fn rows(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(format!("{i:016x},row {i},{}\n", i * 7919).as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

/// Writes `data` through a [`DirectFile`] as a table would: fills a buffer of `cap` bytes in
/// pieces of `piece` and hands it over whenever it holds `flush_at` bytes or more. Returns the
/// file it wrote.
fn write_through(
    dir: &Path,
    data: &[u8],
    cap: usize,
    piece: usize,
    flush_at: usize,
    direct: bool,
    ops: Ops,
) -> Result<PathBuf> {
    let mut f = DirectFile::create_with(dir, "t.csv", direct, ops)?;
    let mut buf = AlignedBuf::zeroed(cap);
    let mut end = buf.start();
    for chunk in data.chunks(piece) {
        buf.bytes_mut()[end..end + chunk.len()].copy_from_slice(chunk);
        end += chunk.len();
        if end - buf.start() >= flush_at {
            end = f
                .write(&mut buf, end)
                .map_err(|e| Error::io("writing", dir, e))?;
        }
    }
    f.persist(&buf.bytes()[buf.start()..end])
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn aligned_buffers_are_aligned() {
    for len in [0, 1, 4095, 4096, 1 << 20] {
        let b = AlignedBuf::zeroed(len);
        assert_eq!(b.bytes()[b.start()..].as_ptr() as usize % ALIGN, 0);
        assert!(b.bytes().len() - b.start() >= len);
    }
}

#[test]
fn files_are_byte_identical_at_every_size_and_piece() {
    let dir = tempfile::tempdir().unwrap();
    // Sizes below one block (all tail), exactly whole blocks (no tail), and many blocks plus a
    // tail; pieces that do and do not divide the block size.
    for (size, piece, flush_at) in [
        (0, 10, 8192),
        (100, 7, 8192),
        (ALIGN, 64, 8192),
        (3 * ALIGN, 512, 8192),
        (5 * ALIGN + 1, 333, 8192),
        (300_000, 1000, 8192),
        (1 << 20, 4096, 65536),
        (2_000_003, 977, 100_000),
    ] {
        let data = rows(size);
        for direct in [true, false] {
            let path = write_through(
                dir.path(),
                &data,
                flush_at + 4096,
                piece,
                flush_at,
                direct,
                SYSTEM,
            )
            .unwrap();
            assert_eq!(path, dir.path().join("t.csv"));
            let got = std::fs::read(&path).unwrap();
            assert!(got == data, "size {size} piece {piece} direct {direct}");
            // Only the final file: the temp file was renamed.
            assert_eq!(names(dir.path()), ["t.csv"]);
        }
    }
}

#[test]
fn tmpfs_gives_the_same_bytes() {
    // tmpfs refuses O_DIRECT before Linux 6.6 and accepts it (unaligned too) after: either way
    // the bytes must come out the same.
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let Ok(dir) = tempfile::tempdir_in(shm) else {
        return;
    };
    let data = rows(1_000_001);
    let path = write_through(dir.path(), &data, 70_000, 4321, 65_536, true, SYSTEM).unwrap();
    assert!(std::fs::read(path).unwrap() == data);
}

/// A file system that refuses the flag itself (as tmpfs before Linux 6.6).
const NO_FLAG: Ops = Ops {
    set_direct: |f, on| {
        if on {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            (SYSTEM.set_direct)(f, false)
        }
    },
    write_at: SYSTEM.write_at,
};

#[test]
fn a_file_system_without_o_direct_gets_buffered_writes() {
    let dir = tempfile::tempdir().unwrap();
    let f = DirectFile::create_with(dir.path(), "t.csv", true, NO_FLAG).unwrap();
    assert!(!f.is_direct());
    drop(f);
    let data = rows(500_000);
    let path = write_through(dir.path(), &data, 70_000, 999, 65_536, true, NO_FLAG).unwrap();
    assert!(std::fs::read(path).unwrap() == data);
}

/// Whether O_DIRECT is set on `f`.
fn has_direct(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL on an open descriptor.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_DIRECT != 0
}

/// A file system that takes the flag but refuses direct writes (as some network and FUSE file
/// systems do): every write while O_DIRECT is set fails with `code`.
fn refusing(code: i32) -> Ops {
    fn write_einval(f: &File, b: &[u8], off: u64) -> io::Result<()> {
        if has_direct(f) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        f.write_all_at(b, off)
    }
    fn write_eopnotsupp(f: &File, b: &[u8], off: u64) -> io::Result<()> {
        if has_direct(f) {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        f.write_all_at(b, off)
    }
    Ops {
        set_direct: SYSTEM.set_direct,
        write_at: if code == libc::EINVAL {
            write_einval
        } else {
            write_eopnotsupp
        },
    }
}

#[test]
fn refused_direct_writes_fall_back_to_buffered_ones() {
    for code in [libc::EINVAL, libc::EOPNOTSUPP] {
        let dir = tempfile::tempdir().unwrap();
        let ops = refusing(code);
        // Only a file system with O_DIRECT shows the fallback; elsewhere this is the NO_FLAG case.
        let probe = DirectFile::create_with(dir.path(), "probe.csv", true, ops).unwrap();
        let had_flag = probe.is_direct();
        drop(probe);
        let data = rows(700_001);
        let mut f = DirectFile::create_with(dir.path(), "t.csv", true, ops).unwrap();
        let mut buf = AlignedBuf::zeroed(200_000);
        let mut end = buf.start();
        for chunk in data.chunks(150_000) {
            buf.bytes_mut()[end..end + chunk.len()].copy_from_slice(chunk);
            end = f.write(&mut buf, end + chunk.len()).unwrap();
        }
        let tail = buf.bytes()[buf.start()..end].to_vec();
        f.finish(&tail).unwrap();
        // The writer thread cleared the flag after the first refusal, and said so.
        assert!(!f.is_direct());
        assert!(!has_direct(f.tmp.as_file()));
        let path = f.persist(b"").unwrap();
        assert!(
            std::fs::read(path).unwrap() == data,
            "code {code} flag {had_flag}"
        );
    }
}

#[test]
fn a_misaligned_direct_write_falls_back_on_a_real_file_system() {
    // The kernel's own EINVAL (ext4, XFS, btrfs refuse a misaligned buffer): write_block must
    // clear the flag and write the same bytes buffered. Where the file system accepts it
    // (tmpfs, NFS), the direct write simply succeeds.
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempfile_in(dir.path()).unwrap();
    let mut direct = set_direct(&tmp, true).is_ok();
    let buf = AlignedBuf::zeroed(3 * ALIGN);
    let data = &buf.bytes()[buf.start() + 1..buf.start() + 1 + ALIGN];
    write_block(&SYSTEM, &tmp, data, 0, &mut direct).unwrap();
    assert_eq!(direct, has_direct(&tmp));
    let mut got = Vec::new();
    io::Read::read_to_end(&mut &tmp, &mut got).unwrap();
    assert!(got == data);
}

/// A disk that fails: every direct write is an I/O error.
const EIO_WHEN_DIRECT: Ops = Ops {
    set_direct: SYSTEM.set_direct,
    write_at: |f, b, off| {
        if has_direct(f) {
            Err(io::Error::from_raw_os_error(libc::EIO))
        } else {
            f.write_all_at(b, off)
        }
    },
};

/// A disk that is full.
const ENOSPC: Ops = Ops {
    set_direct: SYSTEM.set_direct,
    write_at: |_, _, _| Err(io::Error::from_raw_os_error(libc::ENOSPC)),
};

#[test]
fn write_errors_are_errors_and_leave_no_file() {
    // (system calls, direct, whether only direct writes fail)
    for (ops, direct, only_direct) in [
        (EIO_WHEN_DIRECT, true, true),
        (ENOSPC, true, false),
        (ENOSPC, false, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let probe = DirectFile::create_with(dir.path(), "probe.csv", true, SYSTEM).unwrap();
        let fs_direct = probe.is_direct();
        drop(probe);
        let r = write_through(
            dir.path(),
            &rows(400_000),
            70_000,
            1000,
            65_536,
            direct,
            ops,
        );
        if only_direct && !fs_direct {
            // No O_DIRECT here, so the failing direct path is never taken.
            assert!(r.is_ok());
            continue;
        }
        let e = r.unwrap_err().to_string();
        assert!(e.contains("writing"), "{e}");
        // Neither the final name nor the temp file is left.
        assert_eq!(names(dir.path()), Vec::<String>::new());
    }
}

#[test]
fn a_dropped_file_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = DirectFile::create(dir.path(), "t.csv", true).unwrap();
    let mut buf = AlignedBuf::zeroed(100_000);
    let data = rows(90_000);
    let s = buf.start();
    buf.bytes_mut()[s..s + data.len()].copy_from_slice(&data);
    f.write(&mut buf, s + data.len()).unwrap();
    drop(f);
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

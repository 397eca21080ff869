//! The file side of the knowledge pool, shared by every index backend ([`SqlitePool`],
//! [`PgPool`]): checking an insert, the safetensors files (one per part, F32,
//! little-endian, no metadata), writing them durably, reading them back, and finding
//! stale leftovers. The backends only differ in where the index rows live and in which
//! lock keeps a cleaner and an inserter apart.
//!
//! [`SqlitePool`]: crate::SqlitePool
//! [`PgPool`]: crate::PgPool

use std::collections::HashSet;
use std::fmt::Display;
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fnas_core::pool::{BlockConfig, PoolEntry, PoolError, PoolPart, PoolTensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// Age after which a `*.tmp` file or a file without an index row is removed on open.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(600);

pub(crate) const TENSOR_SUFFIX: &str = ".safetensors";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Makes file names unique within the process (the pid and time do across processes).
static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn io_err(path: &Path, e: impl Display) -> PoolError {
    PoolError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

pub(crate) fn corrupt(id: i64, message: impl Display) -> PoolError {
    PoolError::Corrupt {
        id,
        message: message.to_string(),
    }
}

pub(crate) fn invalid(message: impl Display) -> PoolError {
    PoolError::Invalid(message.to_string())
}

/// The local clock, seconds since the Unix epoch.
pub(crate) fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Syncs a folder so that renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PoolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, format!("cannot sync the folder: {e}")))
}

/// Creates the pool folder (and missing parents) unless it exists, syncing each new
/// folder's parent so the folder survives a crash; refuses a path that is not a folder.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), PoolError> {
    if !dir.is_dir() {
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err())
            .collect();
        fs::create_dir_all(dir)
            .map_err(|e| io_err(dir, format!("cannot create the pool folder: {e}")))?;
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
    }
    if !dir.is_dir() {
        return Err(io_err(dir, "the pool folder is not a directory"));
    }
    Ok(())
}

/// `true` for a bare file name (no folder part, not `.`/`..`): what the index holds.
pub(crate) fn is_plain_name(name: &str) -> bool {
    let mut c = Path::new(name).components();
    matches!(
        (c.next(), c.next()),
        (Some(Component::Normal(n)), None) if n == name
    )
}

/// Refuses what the pool could not store faithfully, before anything is written.
pub(crate) fn validate(parts: &[(PoolEntry, Vec<PoolTensor>)]) -> Result<(), PoolError> {
    let Some((first, _)) = parts.first() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    for (i, (e, tensors)) in parts.iter().enumerate() {
        let what = format!("part {i} ({} {})", e.part.as_str(), e.position);
        if e.experiment != first.experiment || e.arch != first.arch {
            return Err(invalid(format!(
                "{what}: one insert holds one network, but its experiment/arch differ from \
                 part 0's"
            )));
        }
        if !seen.insert((e.part, e.position)) {
            return Err(invalid(format!("{what}: the network has it twice")));
        }
        if !e.val_accuracy.is_finite() {
            return Err(invalid(format!(
                "{what}: val_accuracy {} is not finite",
                e.val_accuracy
            )));
        }
        if !e.config.width.is_finite() {
            return Err(invalid(format!(
                "{what}: config width {} is not finite",
                e.config.width
            )));
        }
        let mut names = HashSet::new();
        for t in tensors {
            if t.name.is_empty() || t.name == "__metadata__" {
                return Err(invalid(format!(
                    "{what}: tensor name `{}` is not allowed",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!(
                    "{what}: tensor `{}` appears twice",
                    t.name
                )));
            }
            let elements = t
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if elements != Some(t.data.len()) {
                return Err(invalid(format!(
                    "{what}: tensor `{}` has {} values for shape {:?}",
                    t.name,
                    t.data.len(),
                    t.shape
                )));
            }
        }
    }
    Ok(())
}

/// The safetensors bytes of one part (F32, little-endian; no metadata).
pub(crate) fn encode(tensors: &[PoolTensor]) -> Result<Vec<u8>, PoolError> {
    let raw: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&raw)
        .map(|(t, bytes)| {
            TensorView::new(Dtype::F32, t.shape.clone(), bytes).map(|v| (t.name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("cannot encode tensors: {e}")))?;
    safetensors::serialize(views, None).map_err(|e| invalid(format!("cannot encode tensors: {e}")))
}

/// The tensors of a safetensors file's bytes, sorted by name; `shown` and `id` name the
/// entry in errors (anything but F32 is damage: the pool never writes it).
pub(crate) fn decode(id: i64, shown: &str, bytes: &[u8]) -> Result<Vec<PoolTensor>, PoolError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| corrupt(id, format!("{shown}: not a safetensors file: {e}")))?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(
                id,
                format!("{shown}: tensor `{name}` is {:?}, not F32", view.dtype()),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push(PoolTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// [`BlockPool::load`](fnas_core::pool::BlockPool::load) for an entry whose file lives
/// in `dir`: a missing, resized or unreadable file is [`PoolError::Corrupt`], and a
/// name that would leave `dir` is never read.
pub(crate) fn load(dir: &Path, entry: &PoolEntry) -> Result<Vec<PoolTensor>, PoolError> {
    let id = entry.id;
    if !is_plain_name(&entry.file) {
        return Err(corrupt(
            id,
            format!(
                "file `{}` is not a name inside {}",
                entry.file,
                dir.display()
            ),
        ));
    }
    let path = dir.join(&entry.file);
    let shown = path.display().to_string();
    let bytes = fs::read(&path).map_err(|e| corrupt(id, format!("{shown}: {e}")))?;
    if entry.bytes != 0 && bytes.len() as u64 != entry.bytes {
        return Err(corrupt(
            id,
            format!(
                "{shown}: {} bytes, the index says {}",
                bytes.len(),
                entry.bytes
            ),
        ));
    }
    if let Some(want) = &entry.checksum {
        if &checksum(&bytes) != want {
            return Err(corrupt(
                id,
                format!("{shown}: checksum mismatch: the file changed since it was written"),
            ));
        }
    }
    decode(id, &shown, &bytes)
}

/// A name no other writer uses: time, pid and a counter, then the part it holds.
pub(crate) fn file_name(now: Duration, entry: &PoolEntry) -> String {
    format!(
        "{}-{}-{}-{}{}{TENSOR_SUFFIX}",
        now.as_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        entry.part.as_str(),
        entry.position
    )
}

/// Writes `bytes` to `dir/name` through `name.tmp` (synced, then renamed). `written`
/// receives every path this left on disk, so the caller can remove them on failure.
pub(crate) fn write_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    written: &mut Vec<PathBuf>,
) -> Result<(), PoolError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, format!("cannot create: {e}")))?;
    written.push(tmp.clone());
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, format!("cannot write: {e}")))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, format!("cannot rename into place: {e}")))?;
    written.pop();
    written.push(path);
    Ok(())
}

/// One part of an insert whose file is on disk and synced: what its index row needs.
pub(crate) struct Written<'a> {
    pub entry: &'a PoolEntry,
    /// `entry.config` as JSON (the index keeps the text, floats exact).
    pub config: String,
    /// The file's name inside the pool folder.
    pub file: String,
    pub bytes: i64,
    /// [`checksum`] of the file's bytes.
    pub checksum: String,
}

impl Written<'_> {
    /// Fails when the file is gone: called by the index transaction once it holds the
    /// lock that the cleaner takes, so a row never names a file a cleaner removed.
    pub fn check_present(&self, dir: &Path) -> Result<(), PoolError> {
        let path = dir.join(&self.file);
        if path.is_file() {
            Ok(())
        } else {
            Err(io_err(&path, "the file vanished before it was indexed"))
        }
    }
}

/// The first half of every backend's insert: validates `parts`, writes and syncs one
/// file per part (and the folder), then lets `index` add the rows in one transaction.
/// Any failure removes the files this call wrote, so an error leaves nothing behind and
/// a crash at most orphans (see [`Stale`]).
pub(crate) fn insert(
    dir: &Path,
    parts: &[(PoolEntry, Vec<PoolTensor>)],
    index: impl FnOnce(&[Written<'_>]) -> Result<Vec<i64>, PoolError>,
) -> Result<Vec<i64>, PoolError> {
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    validate(parts)?;
    let mut written = Vec::new();
    let result = write_parts(dir, parts, &mut written).and_then(|rows| {
        fnas_core::crash::point("pool-write");
        index(&rows)
    });
    if result.is_err() {
        for path in &written {
            let _ = fs::remove_file(path);
        }
    }
    result
}

fn write_parts<'a>(
    dir: &Path,
    parts: &'a [(PoolEntry, Vec<PoolTensor>)],
    written: &mut Vec<PathBuf>,
) -> Result<Vec<Written<'a>>, PoolError> {
    let now = since_epoch();
    let mut rows = Vec::with_capacity(parts.len());
    for (entry, tensors) in parts {
        let bytes = encode(tensors)?;
        let file = file_name(now, entry);
        write_file(dir, &file, &bytes, written)?;
        let sum = checksum(&bytes);
        let config = serde_json::to_string(&entry.config)
            .map_err(|e| invalid(format!("cannot encode the config: {e}")))?;
        let bytes = i64::try_from(bytes.len())
            .map_err(|_| invalid(format!("{file}: {} bytes is too large", bytes.len())))?;
        rows.push(Written {
            entry,
            config,
            file,
            bytes,
            checksum: sum,
        });
    }
    sync_dir(dir)?;
    Ok(rows)
}

/// The error of a damaged entry whose network's rows `deleted` removed (their files are
/// removed here, as after an eviction): says whether the network left the pool.
pub(crate) fn dropped(
    dir: &Path,
    id: i64,
    message: &str,
    deleted: Result<Vec<String>, PoolError>,
) -> PoolError {
    let note = match deleted.and_then(|files| remove_evicted(dir, &files).map(|()| files.len())) {
        Ok(n) => format!("; its network ({n} entries) was dropped from the pool"),
        Err(d) => format!("; dropping its network failed: {d}"),
    };
    corrupt(id, format!("{message}{note}"))
}

/// Removes the files of evicted rows (after their rows are committed: a crash in
/// between leaves only orphans). Names that are not plain are never touched.
pub(crate) fn remove_evicted(dir: &Path, files: &[String]) -> Result<(), PoolError> {
    for name in files.iter().filter(|n| is_plain_name(n)) {
        let _ = fs::remove_file(dir.join(name));
    }
    sync_dir(dir)
}

/// An index row as stored, before its values are checked.
pub(crate) struct RawEntry {
    pub id: i64,
    pub space: String,
    pub part: String,
    pub position: i64,
    pub config: String,
    pub resolution: i64,
    pub task: String,
    pub classes: i64,
    pub experiment: String,
    pub arch: String,
    /// `u64` as its two's-complement `i64`.
    pub budget_images: i64,
    pub val_accuracy: f64,
    pub file: String,
    pub bytes: i64,
    pub created_at: f64,
    pub checksum: Option<String>,
}

impl RawEntry {
    /// The entry, or [`PoolError::Corrupt`] naming the column that does not fit.
    pub fn into_entry(self) -> Result<PoolEntry, PoolError> {
        let id = self.id;
        let bad = |column: &str, e: &dyn Display| corrupt(id, format!("bad {column}: {e}"));
        let small = |column: &str, v: i64| u32::try_from(v).map_err(|e| bad(column, &e));
        let part = PoolPart::parse(&self.part).ok_or_else(|| bad("part", &self.part))?;
        let config: BlockConfig =
            serde_json::from_str(&self.config).map_err(|e| bad("config JSON", &e))?;
        Ok(PoolEntry {
            id,
            space: self.space,
            part,
            position: small("position", self.position)?,
            config,
            resolution: small("resolution", self.resolution)?,
            task: self.task,
            classes: small("classes", self.classes)?,
            experiment: self.experiment,
            arch: self.arch,
            budget_images: self.budget_images as u64,
            val_accuracy: self.val_accuracy,
            file: self.file,
            bytes: u64::try_from(self.bytes).map_err(|e| bad("bytes", &e))?,
            created_at: self.created_at,
            checksum: self.checksum,
        })
    }
}

/// SHA-256 of `bytes`, lowercase hex: the checksum an index row records for its file.
pub(crate) fn checksum(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Leftovers that may be stale: `*.tmp` files and `*.safetensors` files older than
/// [`ORPHAN_GRACE`]. A younger one may belong to another process between writing and
/// indexing it; other files in the folder are not the pool's and stay.
pub(crate) struct Stale {
    dir: PathBuf,
    cutoff: SystemTime,
    names: Vec<String>,
}

impl Stale {
    /// Lists the candidates in `dir`; `None` when there are none (so the caller need
    /// not take its lock).
    pub fn list(dir: &Path) -> Result<Option<Stale>, PoolError> {
        let Some(cutoff) = SystemTime::now().checked_sub(ORPHAN_GRACE) else {
            return Ok(None);
        };
        let mut names = Vec::new();
        let listing = fs::read_dir(dir)
            .map_err(|e| io_err(dir, format!("cannot list the pool folder: {e}")))?;
        for item in listing {
            let item = item.map_err(|e| io_err(dir, format!("cannot list: {e}")))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            if (name.ends_with(TMP_SUFFIX) || name.ends_with(TENSOR_SUFFIX))
                && is_old(&item.path(), cutoff)
            {
                names.push(name);
            }
        }
        Ok((!names.is_empty()).then(|| Stale {
            dir: dir.to_path_buf(),
            cutoff,
            names,
        }))
    }

    /// Removes each candidate without an index row (`indexed` asks the index) that is
    /// still old. The caller holds the lock inserts take to index their files, and syncs
    /// the folder after releasing it when anything went. Returns how many went.
    pub fn remove_unindexed(
        self,
        mut indexed: impl FnMut(&str) -> Result<bool, PoolError>,
    ) -> Result<usize, PoolError> {
        let mut removed = 0;
        for name in self.names {
            let has_row = name.ends_with(TENSOR_SUFFIX) && indexed(&name)?;
            let path = self.dir.join(&name);
            // re-checked: the file may have been replaced since the listing
            if !has_row && is_old(&path, self.cutoff) && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn is_old(path: &Path, cutoff: SystemTime) -> bool {
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| m.modified().ok())
        .is_some_and(|t| t <= cutoff)
}

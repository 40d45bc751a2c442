//! File names, in one place (a leaf: it reads no other module).

use std::path::Path;

/// The last component of `path` as text ("" for a path without one, such
/// as `/` or `..`): a name to show or to build a file name from.
pub fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

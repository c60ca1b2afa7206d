//! The TEXMEX vector formats (`*.fvecs`, `*.ivecs`, as used by SIFT and
//! the ANN benchmarks): per row a little-endian `i32` dimension, then that
//! many 4-byte values. Used to load data sets and their ground truth.

use std::io;
use std::path::Path;

/// A TEXMEX matrix: `rows` rows of `dim` values, row-major.
#[derive(Clone, Debug)]
pub struct Matrix<T> {
    pub dim: usize,
    pub rows: usize,
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

fn read_vecs<T>(path: &Path, decode: impl Fn([u8; 4]) -> T) -> io::Result<Matrix<T>> {
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let mut data = Vec::new();
    let mut dim = None;
    let mut rows = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        let head: [u8; 4] = bytes
            .get(pos..pos + 4)
            .ok_or_else(|| bad("truncated row header"))?
            .try_into()
            .map_err(|_| bad("header"))?;
        let d = u32::from_le_bytes(head) as usize;
        if *dim.get_or_insert(d) != d {
            return Err(bad("rows of different dimensions"));
        }
        let body = bytes
            .get(pos + 4..pos + 4 + 4 * d)
            .ok_or_else(|| bad("truncated row"))?;
        data.extend(
            body.chunks_exact(4)
                .map(|c| decode([c[0], c[1], c[2], c[3]])),
        );
        rows += 1;
        pos += 4 + 4 * d;
    }
    Ok(Matrix {
        dim: dim.unwrap_or(0),
        rows,
        data,
    })
}

/// Reads an `.fvecs` file.
pub fn read_fvecs(path: &Path) -> io::Result<Matrix<f32>> {
    read_vecs(path, f32::from_le_bytes)
}

/// Reads an `.ivecs` file.
pub fn read_ivecs(path: &Path) -> io::Result<Matrix<i32>> {
    read_vecs(path, i32::from_le_bytes)
}

//! Matrix products over slices, for CPU kernels: the `gemm` crate that flex's own matrix
//! product calls (AVX-512 kernels where the CPU has them), writing into a slice of the caller's
//! (a block of columns of an output, a per-thread buffer) or adding into it.
//!
//! Flex's `float_matmul` returns a new tensor: it allocates the product zeroed, copies it once
//! more to align it, and a kernel then copies or adds it where it belongs. On ResNet-18's
//! training step that was 6 % of the time; here the product lands in place.

use std::ops::Range;

/// Multiply-adds above which one product runs on all threads (flex's threshold).
const PARALLEL: usize = 192 * 192 * 192;

/// A matrix read from a slice: `rows × cols`, element `(i, j)` at `i · row_stride + j ·
/// col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// `data` as a row-major `rows × cols` matrix.
    ///
    /// # Panics
    /// When `data` holds fewer than `rows · cols` numbers.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// `data` as `rows × cols`, each row `row_stride` after the one before.
    ///
    /// # Panics
    /// When the last row ends past `data`.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
        .checked()
    }

    /// The transpose (a view: nothing moves).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `r` of this matrix.
    ///
    /// # Panics
    /// When `r` ends past the last row.
    pub fn rows(self, r: Range<usize>) -> Self {
        assert!(
            r.start <= r.end && r.end <= self.rows,
            "rows {r:?} of {}",
            self.rows
        );
        Self {
            data: tail(self.data, r.start * self.row_stride),
            rows: r.len(),
            ..self
        }
    }

    /// Group `i` of this matrix's rows, cut into groups of `n` rows.
    ///
    /// # Panics
    /// When the group ends past the last row.
    pub fn row_group(self, i: usize, n: usize) -> Self {
        self.rows(i * n..(i + 1) * n)
    }

    /// Columns `c` of this matrix.
    ///
    /// # Panics
    /// When `c` ends past the last column.
    pub fn cols(self, c: Range<usize>) -> Self {
        assert!(
            c.start <= c.end && c.end <= self.cols,
            "columns {c:?} of {}",
            self.cols
        );
        Self {
            data: tail(self.data, c.start * self.col_stride),
            cols: c.len(),
            ..self
        }
    }

    fn checked(self) -> Self {
        if let Some(last) = last_index(self.rows, self.cols, self.row_stride, self.col_stride) {
            assert!(
                last < self.data.len(),
                "a {}×{} matrix with strides ({}, {}) needs {} numbers, not {}",
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
                last + 1,
                self.data.len()
            );
        }
        self
    }
}

/// A row-major matrix written into a slice: `rows × cols`, each row `row_stride` after the one
/// before (`row_stride ≥ cols`, so that no two elements share a number).
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// `data` as a row-major `rows × cols` matrix.
    ///
    /// # Panics
    /// When `data` holds fewer than `rows · cols` numbers.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// `data` as `rows × cols`, each row `row_stride` after the one before.
    ///
    /// # Panics
    /// When `row_stride < cols`, or the last row ends past `data`.
    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            row_stride >= cols || rows <= 1,
            "rows of {cols} numbers {row_stride} apart overlap"
        );
        if let Some(last) = last_index(rows, cols, row_stride, 1) {
            assert!(
                last < data.len(),
                "a {rows}×{cols} matrix with rows {row_stride} apart needs {} numbers, not {}",
                last + 1,
                data.len()
            );
        }
        Self {
            data,
            rows,
            cols,
            row_stride,
        }
    }

    /// Columns `c` of this matrix.
    ///
    /// # Panics
    /// When `c` ends past the last column.
    pub fn cols(self, c: Range<usize>) -> Self {
        assert!(
            c.start <= c.end && c.end <= self.cols,
            "columns {c:?} of {}",
            self.cols
        );
        let len = self.data.len();
        Self {
            data: &mut self.data[c.start.min(len)..],
            cols: c.len(),
            ..self
        }
    }
}

/// `c = a · b`, or with `accumulate` `c += a · b`; on all threads when the product is large
/// (see [`matmul_on_this_thread`] for one inside a parallel loop of small ones).
///
/// # Panics
/// When the shapes do not fit together.
pub fn matmul(c: MatMut, a: Mat, b: Mat, accumulate: bool) {
    let parallel = a.rows * a.cols * b.cols >= PARALLEL;
    product(c, a, b, accumulate, parallel)
}

/// [`matmul`] on the calling thread alone.
pub fn matmul_on_this_thread(c: MatMut, a: Mat, b: Mat, accumulate: bool) {
    product(c, a, b, accumulate, false)
}

// The workspace's one `unsafe` block: `gemm` takes raw pointers and strides.
#[allow(unsafe_code)]
fn product(c: MatMut, a: Mat, b: Mat, accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && c.rows == m && c.cols == n,
        "a product of {m}×{k} and {}×{n} into {}×{}",
        b.rows,
        c.rows,
        c.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in c.data.chunks_mut(c.row_stride.max(1)).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let stride = |s: usize| isize::try_from(s).expect("a stride that fits isize");
    // SAFETY: the constructors checked that every element of `a` and `b` lies in its slice and
    // every element of `c` in its own, rows of `c` not overlapping (`row_stride ≥ cols`); `c`
    // is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            1,
            stride(c.row_stride),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The index of the last element of a `rows × cols` matrix with these strides (`None` when it
/// is empty).
fn last_index(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    (rows > 0 && cols > 0).then(|| (rows - 1) * row_stride + (cols - 1) * col_stride)
}

/// `data` from `at` on (empty past its end: only an empty view starts there).
fn tail(data: &[f32], at: usize) -> &[f32] {
    &data[at.min(data.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by its definition, in f64.
    fn reference(a: &[f32], b: &[f32], [m, k, n]: [usize; 3]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum();
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn numbers(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn close(x: &[f32], y: &[f32]) {
        assert_eq!(x.len(), y.len());
        for (i, (a, b)) in x.iter().zip(y).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "at {i}: {a} against {b}"
            );
        }
    }

    #[test]
    fn a_product_lands_in_a_block_of_columns_and_leaves_the_rest() {
        let [m, k, n] = [5, 7, 3];
        let (a, b) = (numbers(m * k, 1), numbers(k * n, 2));
        // `c` is 5×8; the product goes to columns 2..5.
        let mut c = vec![9.0f32; m * 8];
        matmul(
            MatMut::new(&mut c, m, 8).cols(2..5),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            false,
        );
        let expected = reference(&a, &b, [m, k, n]);
        for i in 0..m {
            close(&c[i * 8 + 2..i * 8 + 5], &expected[i * n..][..n]);
            assert!(
                c[i * 8..i * 8 + 2]
                    .iter()
                    .chain(&c[i * 8 + 5..i * 8 + 8])
                    .all(|&v| v == 9.0)
            );
        }
    }

    #[test]
    fn accumulating_adds_to_what_is_there_and_transposes_are_views() {
        let [m, k, n] = [4, 6, 5];
        // `a` stored transposed (`k × m`), `b` as rows 1..7 of a wider matrix, columns 2..7.
        let at = numbers(k * m, 3);
        let wide = numbers(8 * 9, 4);
        let a: Vec<f32> = (0..m * k).map(|i| at[(i % k) * m + i / k]).collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| wide[(1 + i / n) * 9 + 2 + i % n])
            .collect();
        let mut c = numbers(m * n, 5);
        let before = c.clone();
        matmul_on_this_thread(
            MatMut::new(&mut c, m, n),
            Mat::new(&at, k, m).t(),
            Mat::new(&wide, 8, 9).rows(1..7).cols(2..7),
            true,
        );
        let product = reference(&a, &b, [m, k, n]);
        let expected: Vec<f32> = before.iter().zip(&product).map(|(x, y)| x + y).collect();
        close(&c, &expected);
    }

    #[test]
    fn a_large_product_on_all_threads_equals_the_definition() {
        let [m, k, n] = [200, 190, 210];
        let (a, b) = (numbers(m * k, 6), numbers(k * n, 7));
        let mut c = vec![0f32; m * n];
        matmul(
            MatMut::new(&mut c, m, n),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            false,
        );
        close(&c, &reference(&a, &b, [m, k, n]));
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros_or_leaves_the_sum() {
        let mut c = vec![3.0f32; 6];
        matmul(
            MatMut::new(&mut c, 2, 3),
            Mat::new(&[], 2, 0),
            Mat::new(&[], 0, 3),
            true,
        );
        assert_eq!(c, [3.0; 6]);
        matmul(
            MatMut::new(&mut c, 2, 3),
            Mat::new(&[], 2, 0),
            Mat::new(&[], 0, 3),
            false,
        );
        assert_eq!(c, [0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "needs 12 numbers, not 11")]
    fn a_slice_too_short_for_its_matrix_is_refused() {
        Mat::new(&[0.0; 11], 3, 4);
    }

    #[test]
    #[should_panic(expected = "a product of 2×3 and 4×2")]
    fn shapes_that_do_not_fit_are_refused() {
        let mut c = [0.0; 4];
        matmul(
            MatMut::new(&mut c, 2, 2),
            Mat::new(&[0.0; 6], 2, 3),
            Mat::new(&[0.0; 8], 4, 2),
            false,
        );
    }
}

//! The shape of one convolution, checked once so kernels can index without checks.

/// Why a convolution shape or buffer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    /// A size is zero, the kernel does not fit the padded input, or the groups are not
    /// 1 (dense) or `cin == cout == groups` (depthwise).
    #[error("unsupported convolution: {0}")]
    Shape(String),
    /// A buffer's length differs from the one the shape implies.
    #[error("{name} holds {got} values, the shape needs {want}")]
    Buffer {
        name: &'static str,
        got: usize,
        want: usize,
    },
}

/// A square-kernel 2-D convolution with equal padding on all sides, NCHW input
/// `[batch, cin, h, w]`, weight `[cout, cin / groups, kernel, kernel]`, output
/// `[batch, cout, out_h, out_w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl ConvGeom {
    /// Output height (saturating, so a shape [`ConvGeom::check`] rejects still has
    /// buffer lengths to report).
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad).saturating_sub(self.kernel) / self.stride.max(1) + 1
    }

    /// Output width (saturating like [`ConvGeom::out_h`]).
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad).saturating_sub(self.kernel) / self.stride.max(1) + 1
    }

    /// Whether this is a depthwise convolution (one input channel per output channel).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.cin && self.groups == self.cout
    }

    /// Values in the input, the weight and the output.
    pub fn x_len(&self) -> usize {
        self.batch * self.cin * self.h * self.w
    }

    /// Values in the weight.
    pub fn w_len(&self) -> usize {
        self.cout * (self.cin / self.groups.max(1)) * self.kernel * self.kernel
    }

    /// Values in the output.
    pub fn y_len(&self) -> usize {
        self.batch * self.cout * self.out_h() * self.out_w()
    }

    /// Checks the sizes; kernels call it before touching a buffer.
    pub fn check(&self) -> Result<(), KernelError> {
        let bad = |why: &str| Err(KernelError::Shape(format!("{why} ({self:?})")));
        if [
            self.batch,
            self.cin,
            self.cout,
            self.h,
            self.w,
            self.kernel,
            self.stride,
        ]
        .contains(&0)
        {
            return bad("a size is zero");
        }
        if self.groups == 0 {
            return bad("groups is zero");
        }
        if self.h + 2 * self.pad < self.kernel || self.w + 2 * self.pad < self.kernel {
            return bad("the kernel is larger than the padded input");
        }
        if self.groups != 1 && !self.is_depthwise() {
            return bad("groups must be 1 or equal to cin and cout");
        }
        Ok(())
    }

    /// [`ConvGeom::check_buffers`] for a forward pass `y = conv(x, w)`.
    pub fn check_forward(&self, x: &[f32], w: &[f32], y: &[f32]) -> Result<(), KernelError> {
        self.check_buffers(&[
            ("x", x.len(), self.x_len()),
            ("w", w.len(), self.w_len()),
            ("y", y.len(), self.y_len()),
        ])
    }

    /// [`ConvGeom::check_buffers`] for the input gradient `dx` from `dy` and `w`.
    pub fn check_backward_input(
        &self,
        dy: &[f32],
        w: &[f32],
        dx: &[f32],
    ) -> Result<(), KernelError> {
        self.check_buffers(&[
            ("dy", dy.len(), self.y_len()),
            ("w", w.len(), self.w_len()),
            ("dx", dx.len(), self.x_len()),
        ])
    }

    /// [`ConvGeom::check_buffers`] for the weight gradient `dw` from `x` and `dy`.
    pub fn check_backward_weight(
        &self,
        x: &[f32],
        dy: &[f32],
        dw: &[f32],
    ) -> Result<(), KernelError> {
        self.check_buffers(&[
            ("x", x.len(), self.x_len()),
            ("dy", dy.len(), self.y_len()),
            ("dw", dw.len(), self.w_len()),
        ])
    }

    /// Checks the shape and that each buffer has the length the shape implies.
    pub fn check_buffers(&self, bufs: &[(&'static str, usize, usize)]) -> Result<(), KernelError> {
        self.check()?;
        for &(name, got, want) in bufs {
            if got != want {
                return Err(KernelError::Buffer { name, got, want });
            }
        }
        Ok(())
    }
}

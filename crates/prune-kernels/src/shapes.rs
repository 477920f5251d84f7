//! Tensor shapes shared by the device operations and their CPU references.

use crate::error::KernelError;

/// Product of `dims`, or a shape error naming `op` on overflow.
pub(crate) fn checked_prod(op: &'static str, dims: &[usize]) -> Result<usize, KernelError> {
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| KernelError::shape(op, format!("element count of {dims:?} overflows")))
    })
}

/// Whether SBP noise is drawn once per channel or once per (example, channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoiseMode {
    /// One theta per channel, shared by the whole batch.
    PerChannel,
    /// One theta per example and channel.
    PerExample,
}

impl NoiseMode {
    /// The `mode` word of the Philox counter (and the kernels' `per_example` flag).
    pub fn counter_tag(self) -> u32 {
        match self {
            NoiseMode::PerChannel => 0,
            NoiseMode::PerExample => 1,
        }
    }
}

/// Activation layout `[rows, channels, inner]`: NCHW has inner = H*W, a dense `N x F`
/// layer has inner = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SbpShape {
    /// Batch size N.
    pub rows: usize,
    /// Channels (or features) C, each with its own (mu, log_sigma).
    pub channels: usize,
    /// Elements per (example, channel): H*W, or 1.
    pub inner: usize,
}

impl SbpShape {
    /// `[n, c, h, w]` activations.
    pub fn nchw(n: usize, c: usize, h: usize, w: usize) -> SbpShape {
        SbpShape {
            rows: n,
            channels: c,
            inner: h.saturating_mul(w),
        }
    }

    /// `[n, f]` activations.
    pub fn features(n: usize, f: usize) -> SbpShape {
        SbpShape {
            rows: n,
            channels: f,
            inner: 1,
        }
    }

    /// Number of activation elements.
    pub fn numel(&self) -> Result<usize, KernelError> {
        checked_prod("SbpShape", &[self.rows, self.channels, self.inner])
    }

    /// Length of the theta buffer for `mode`.
    pub fn theta_len(&self, mode: NoiseMode) -> Result<usize, KernelError> {
        match mode {
            NoiseMode::PerChannel => Ok(self.channels),
            NoiseMode::PerExample => checked_prod("SbpShape", &[self.rows, self.channels]),
        }
    }
}

/// A 2-D convolution over full tensors: input `[batch, in_channels, height, width]`,
/// weight `[out_channels, in_channels, kernel.0, kernel.1]`, groups = 1, dilation = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    /// (KH, KW)
    pub kernel: (usize, usize),
    /// (stride_h, stride_w), both >= 1
    pub stride: (usize, usize),
    /// (pad_h, pad_w), zero padding on both sides
    pub padding: (usize, usize),
}

impl ConvShape {
    /// Output height and width: (H + 2 ph - KH) / sh + 1, likewise for W.
    pub fn output_hw(&self) -> Result<(usize, usize), KernelError> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 {
            return Err(KernelError::invalid(
                "ConvShape",
                "kernel size must be positive",
            ));
        }
        if sh == 0 || sw == 0 {
            return Err(KernelError::invalid("ConvShape", "stride must be positive"));
        }
        let eh = self.height.saturating_add(ph.saturating_mul(2));
        let ew = self.width.saturating_add(pw.saturating_mul(2));
        if eh < kh || ew < kw {
            return Err(KernelError::shape(
                "ConvShape",
                format!(
                    "kernel {kh}x{kw} larger than the padded input {eh}x{ew} \
                     (input {}x{}, padding {ph},{pw})",
                    self.height, self.width
                ),
            ));
        }
        Ok(((eh - kh) / sh + 1, (ew - kw) / sw + 1))
    }

    /// Elements of the full input.
    pub fn input_len(&self) -> Result<usize, KernelError> {
        checked_prod(
            "ConvShape",
            &[self.batch, self.in_channels, self.height, self.width],
        )
    }

    /// Elements of the full weight.
    pub fn weight_len(&self) -> Result<usize, KernelError> {
        checked_prod(
            "ConvShape",
            &[
                self.out_channels,
                self.in_channels,
                self.kernel.0,
                self.kernel.1,
            ],
        )
    }

    /// Elements of the compact output with `kept_out` output channels.
    pub fn output_len(&self, kept_out: usize) -> Result<usize, KernelError> {
        let (ho, wo) = self.output_hw()?;
        checked_prod("ConvShape", &[self.batch, kept_out, ho, wo])
    }
}

/// A `[outer, channels, inner]` view for channel gather / scatter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelLayout {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl ChannelLayout {
    /// NCHW activations, gathering along C.
    pub fn nchw(n: usize, c: usize, h: usize, w: usize) -> ChannelLayout {
        ChannelLayout {
            outer: n,
            channels: c,
            inner: h.saturating_mul(w),
        }
    }

    /// A `[cout, cin, kh, kw]` weight, gathering along the output dimension (0).
    pub fn weight_out_dim(cout: usize, cin: usize, kh: usize, kw: usize) -> ChannelLayout {
        ChannelLayout {
            outer: 1,
            channels: cout,
            inner: cin.saturating_mul(kh).saturating_mul(kw),
        }
    }

    /// A `[cout, cin, kh, kw]` weight, gathering along the input dimension (1).
    pub fn weight_in_dim(cout: usize, cin: usize, kh: usize, kw: usize) -> ChannelLayout {
        ChannelLayout {
            outer: cout,
            channels: cin,
            inner: kh.saturating_mul(kw),
        }
    }

    /// Elements of the full tensor.
    pub fn full_len(&self) -> Result<usize, KernelError> {
        checked_prod("ChannelLayout", &[self.outer, self.channels, self.inner])
    }

    /// Elements of the compact tensor with `kept` channels.
    pub fn compact_len(&self, kept: usize) -> Result<usize, KernelError> {
        checked_prod("ChannelLayout", &[self.outer, kept, self.inner])
    }
}

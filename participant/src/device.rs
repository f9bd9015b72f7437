//! Which libtorch device the participant trains on.
//!
//! The binary links `libtorch_cuda` explicitly (see `build.rs`), so
//! [`tch::Cuda::is_available`] is true wherever the CUDA driver and a GPU
//! exist; elsewhere the same binary runs on the CPU.

use std::fmt;
use std::str::FromStr;

use tch::Device;

/// Errors choosing a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// `--device cuda` on a machine where libtorch sees no GPU.
    #[error(
        "--device cuda was requested but libtorch sees no CUDA device (is the binary linked against libtorch_cuda and LD_LIBRARY_PATH set to the torch lib directory?)"
    )]
    CudaUnavailable,
    /// The flag value is not one of `auto`, `cpu`, `cuda`, `cuda:N`.
    #[error("unknown device {0:?} (expected auto, cpu, cuda or cuda:N)")]
    Unknown(String),
}

/// The `--device` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device `n`; fails when CUDA is unavailable.
    Cuda(usize),
}

impl DeviceChoice {
    /// Resolves the choice against what libtorch reports on this machine.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda(n) => {
                let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
                if tch::Cuda::is_available() && n < count {
                    Ok(Device::Cuda(n))
                } else {
                    Err(DeviceError::CudaUnavailable)
                }
            }
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Short label of a resolved device for logs and metrics (`cpu`, `cuda:0`).
pub fn device_label(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_flags() {
        assert_eq!(
            "auto".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Auto)
        );
        assert_eq!("CPU".parse::<DeviceChoice>().ok(), Some(DeviceChoice::Cpu));
        assert_eq!(
            "cuda".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Cuda(0))
        );
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Cuda(1))
        );
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert_eq!(DeviceChoice::Cpu.resolve().ok(), Some(Device::Cpu));
    }
}

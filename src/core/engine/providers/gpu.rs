//! What the GPU and TensorRT are, asked at run time from the CUDA driver (`libcuda.so.1`) and
//! TensorRT (`libnvinfer.so.10`), loaded with `dlopen` and never linked, so that a build without
//! a GPU runs unchanged.
//!
//! Contract: each function loads its library on the first call and keeps it loaded; it allocates,
//! blocks for the driver's initialisation (a fraction of a second) and fails with the loader's or
//! the driver's message. Call at start-up only.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::path::Path;

/// One CUDA device as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Marketing name, e.g. `NVIDIA H200`.
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Driver API version, e.g. 13000.
    pub driver_version: i32,
}

/// A shared library opened with `dlopen`, kept loaded for the life of the process (no `Drop`:
/// it is never closed).
struct Library(*mut c_void);

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a pointer to a NUL-terminated string owned by the loader,
    // valid until the next dl* call on this thread; it is copied before any other call.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown dlopen error".to_string()
    } else {
        // SAFETY: non-null and NUL-terminated (see above).
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Library {
    fn open(name: &str) -> Result<Self, String> {
        let c = CString::new(name).map_err(|_| format!("{name}: NUL in the library name"))?;
        // SAFETY: `c` is a valid NUL-terminated path; RTLD_NOW resolves every symbol now, so a
        // broken library fails here and not at a later call. Loading runs the library's
        // initialisers, which for libcuda/libnvinfer have no preconditions.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            Err(dl_error())
        } else {
            Ok(Self(handle))
        }
    }

    /// The address of `symbol` (NUL-terminated).
    fn symbol(&self, symbol: &CStr) -> Result<*mut c_void, String> {
        // SAFETY: the handle came from a successful dlopen and is never closed.
        let p = unsafe { libc::dlsym(self.0, symbol.as_ptr()) };
        if p.is_null() {
            Err(format!("{}: {}", symbol.to_string_lossy(), dl_error()))
        } else {
            Ok(p)
        }
    }
}

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type CuDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type GetInferLibVersion = unsafe extern "C" fn() -> i32;

const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: c_int = 76;

fn cu_check(what: &str, code: c_int) -> Result<(), String> {
    if code == 0 {
        Ok(())
    } else {
        Err(format!("{what} failed with CUDA driver error {code}"))
    }
}

/// Describes CUDA device `device_id` through the driver API.
pub fn cuda_device(device_id: i32) -> Result<GpuInfo, String> {
    let lib = Library::open("libcuda.so.1").map_err(|e| format!("CUDA driver: {e}"))?;
    // SAFETY (every transmute below): each symbol is the CUDA driver API function of that name,
    // whose C signature (cuda.h, stable since CUDA 4) is the function-pointer type it becomes.
    let init: CuInit = unsafe { std::mem::transmute(lib.symbol(c"cuInit")?) };
    let get: CuDeviceGet = unsafe { std::mem::transmute(lib.symbol(c"cuDeviceGet")?) };
    let get_name: CuDeviceGetName = unsafe { std::mem::transmute(lib.symbol(c"cuDeviceGetName")?) };
    let get_attr: CuDeviceGetAttribute =
        unsafe { std::mem::transmute(lib.symbol(c"cuDeviceGetAttribute")?) };
    let version: CuDriverGetVersion =
        unsafe { std::mem::transmute(lib.symbol(c"cuDriverGetVersion")?) };
    // SAFETY: cuInit(0) has no preconditions and may be called more than once.
    cu_check("cuInit", unsafe { init(0) })?;
    let mut device: c_int = 0;
    // SAFETY: `device` is a valid out-pointer; an invalid ordinal is reported as an error code.
    cu_check("cuDeviceGet", unsafe { get(&mut device, device_id) })?;
    let mut name = [0 as c_char; 256];
    // SAFETY: the buffer holds 256 chars and the driver writes at most `len` including the NUL.
    cu_check("cuDeviceGetName", unsafe {
        get_name(name.as_mut_ptr(), name.len() as c_int, device)
    })?;
    let (mut major, mut minor, mut driver) = (0, 0, 0);
    // SAFETY: valid out-pointers and a device handle from cuDeviceGet.
    unsafe {
        cu_check(
            "cuDeviceGetAttribute",
            get_attr(
                &mut major,
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                device,
            ),
        )?;
        cu_check(
            "cuDeviceGetAttribute",
            get_attr(
                &mut minor,
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                device,
            ),
        )?;
        cu_check("cuDriverGetVersion", version(&mut driver))?;
    }
    // SAFETY: the driver NUL-terminated the name within the buffer; force a final NUL anyway.
    name[name.len() - 1] = 0;
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .trim()
        .to_string();
    // `Library` has no Drop: the library stays loaded, as ONNX Runtime's CUDA provider uses the
    // same driver.
    let _ = lib;
    Ok(GpuInfo {
        name,
        compute_capability: (major, minor),
        driver_version: driver,
    })
}

/// TensorRT's version as `major.minor.patch`, from `libnvinfer.so.10` found by the loader's
/// search path or in one of `dirs` (e.g. the folder of the ONNX Runtime library).
pub fn tensorrt_version(dirs: &[&Path]) -> Result<String, String> {
    const NAME: &str = "libnvinfer.so.10";
    let mut errors = vec![];
    let mut lib = None;
    let candidates = std::iter::once(NAME.to_string())
        .chain(dirs.iter().map(|d| d.join(NAME).display().to_string()));
    for candidate in candidates {
        match Library::open(&candidate) {
            Ok(l) => {
                lib = Some(l);
                break;
            }
            Err(e) => errors.push(e),
        }
    }
    let lib = lib.ok_or_else(|| format!("TensorRT: {}", errors.join("; ")))?;
    // SAFETY: `getInferLibVersion` is TensorRT's exported `extern "C" int32_t (void)` (NvInfer.h).
    let get: GetInferLibVersion =
        unsafe { std::mem::transmute(lib.symbol(c"getInferLibVersion")?) };
    // SAFETY: no arguments, no preconditions.
    let v = unsafe { get() };
    Ok(version_from_int(v))
}

/// TensorRT's integer version as text: `M*10000 + m*100 + p` from TensorRT 10 on, `M*1000 +
/// m*100 + p` before.
pub fn version_from_int(v: i32) -> String {
    if v >= 10_000 {
        format!("{}.{}.{}", v / 10_000, (v / 100) % 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v / 100) % 10, v % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorrt_versions_decode() {
        assert_eq!(version_from_int(100_800), "10.8.0");
        assert_eq!(version_from_int(101_302), "10.13.2");
        assert_eq!(version_from_int(8_601), "8.6.1");
    }

    #[test]
    fn a_missing_library_is_an_error_not_a_crash() {
        let e = Library::open("/nonexistent/libnvinfer.so.10")
            .err()
            .unwrap();
        assert!(e.contains("libnvinfer.so.10"), "{e}");
        let libc = Library::open("libc.so.6").unwrap();
        assert!(libc.symbol(c"no_such_symbol_in_libc").is_err());
        assert!(libc.symbol(c"getpid").is_ok());
    }
}

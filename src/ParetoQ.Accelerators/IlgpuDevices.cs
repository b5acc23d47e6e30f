using System.Runtime.InteropServices;
using System.Runtime.Loader;
using ILGPU;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace ParetoQ.Accelerators;

/// <summary>Finding and opening ILGPU devices by the names of the programs' --device option.</summary>
public static class IlgpuDevices
{
    static IlgpuDevices()
    {
        // ILGPU imports "OpenCL", which probing turns into libOpenCL.so: a link that only the loader's development
        // package installs (Debian's ocl-icd-opencl-dev). Without it ILGPU reports no OpenCL device at all, so fall
        // back to the runtime's versioned name.
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += (assembly, name) =>
            name == "OpenCL" && assembly == typeof(Context).Assembly && OperatingSystem.IsLinux()
                && NativeLibrary.TryLoad("libOpenCL.so.1", out var handle) ? handle : IntPtr.Zero;
    }

    /// <summary>
    /// Opens the first device of a kind (cuda, opencl, ilgpu-cpu) as a backend, or returns null when there is none.
    /// Throws <see cref="NotSupportedException"/> naming the reason when OpenCL devices exist but ILGPU can drive none.
    /// </summary>
    public static IlgpuBackend? TryCreate(string kind)
    {
        if (kind == "ilgpu-cpu") return CreateCpu();
        var context = Context.Create(builder =>
        {
            if (kind == "cuda") builder.Cuda();
            else if (kind == "opencl") builder.OpenCL(_ => true); // every device, so the unusable ones can be named
            else throw new ArgumentException($"unknown ILGPU device kind '{kind}' (cuda, opencl or ilgpu-cpu)",
                nameof(kind));
            builder.EnableAlgorithms();
        });
        var devices = context.Devices.Where(d => d.AcceleratorType != AcceleratorType.CPU).ToList();
        var device = devices.FirstOrDefault(d => WhyUnusable(d) is null);
        if (device is null)
        {
            context.Dispose();
            if (devices.Count == 0) return null;
            throw new NotSupportedException($"--device {kind}: ILGPU cannot drive {string.Join("; ",
                devices.Select(d => $"{d.Name}, which {WhyUnusable(d)}"))}");
        }
        return new IlgpuBackend(context, device);
    }

    /// <summary>
    /// Why ILGPU cannot drive <paramref name="device"/>, or null when it can. ILGPU's OpenCL backend writes OpenCL C
    /// 2.0 or later with __generic pointers, and its accelerator refuses devices without the generic address space.
    /// </summary>
    public static string? WhyUnusable(Device device)
    {
        if (device is not CLDevice cl) return null;
        if (cl.CLStdVersion < CLBackend.MinimumVersion)
            return $"compiles OpenCL C {cl.CLStdVersion} only, and ILGPU writes {CLBackend.MinimumVersion} or later";
        if (!cl.Capabilities.GenericAddressSpace)
            return "has no generic address space (CL_DEVICE_GENERIC_ADDRESS_SPACE_SUPPORT is false), which the " +
                "OpenCL C of ILGPU 1.5.3 needs for its __generic pointers";
        return null;
    }

    /// <summary>
    /// ILGPU's CPU accelerator, which simulates a GPU with threads: <paramref name="warpSize"/> lanes per warp, one
    /// multiprocessor per core, and groups of <paramref name="lanesPerGroup"/> lanes (by default one warp). For tests;
    /// it is far slower than the CPU backend.
    /// </summary>
    public static IlgpuBackend CreateCpu(int warpSize = 4, int lanesPerGroup = 0)
    {
        int warpsPerGroup = Math.Max(1, lanesPerGroup / warpSize);
        var cpu = new CPUDevice(warpSize, warpsPerGroup, Math.Max(1, Environment.ProcessorCount));
        var context = Context.Create(builder => builder.CPU(cpu).EnableAlgorithms());
        return new IlgpuBackend(context, context.Devices.Single(), lanesPerGroup);
    }

    /// <summary>One line per device ILGPU finds (CUDA, OpenCL and its CPU simulator), with the reason when it cannot
    /// drive one.</summary>
    public static IReadOnlyList<string> Describe()
    {
        using var context = Context.Create(builder => builder.Cuda().OpenCL(_ => true).CPU());
        return context.Devices.Select(d =>
        {
            string kind = d.AcceleratorType switch { AcceleratorType.Cuda => "cuda", AcceleratorType.OpenCL => "opencl",
                _ => "ilgpu-cpu" };
            // The CPU simulator reports an unbounded size: its memory is the host's.
            string memory = d.AcceleratorType == AcceleratorType.CPU ? "host memory"
                : $"{d.MemorySize / (1024.0 * 1024 * 1024):F1} GiB";
            string line = $"{kind,-9}  {d.Name}: {memory}, {d.NumMultiprocessors} multiprocessors, " +
                $"warp {d.WarpSize}, up to {d.MaxNumThreadsPerGroup} threads per group";
            return WhyUnusable(d) is { } why ? $"{line}; unusable: it {why}" : line;
        }).ToList();
    }
}

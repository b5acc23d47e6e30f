using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace ParetoQ.Accelerators;

/// <summary>Finding and opening ILGPU devices by the names of the programs' --device option.</summary>
public static class IlgpuDevices
{
    /// <summary>Opens the first device of a kind (cuda, opencl, ilgpu-cpu) as a backend, or returns null when there is
    /// none.</summary>
    public static IlgpuBackend? TryCreate(string kind)
    {
        if (kind == "ilgpu-cpu") return CreateCpu();
        var context = Context.Create(builder =>
        {
            if (kind == "cuda") builder.Cuda();
            else if (kind == "opencl") builder.OpenCL();
            else throw new ArgumentException($"unknown ILGPU device kind '{kind}' (cuda, opencl or ilgpu-cpu)",
                nameof(kind));
            builder.EnableAlgorithms();
        });
        var device = context.Devices.FirstOrDefault(d => d.AcceleratorType != AcceleratorType.CPU);
        if (device is null)
        {
            context.Dispose();
            return null;
        }
        return new IlgpuBackend(context, device);
    }

    /// <summary>
    /// ILGPU's CPU accelerator, which simulates a GPU with threads: <paramref name="warpSize"/> lanes per warp and one
    /// warp per multiprocessor, one multiprocessor per core. For tests; it is far slower than the CPU backend.
    /// </summary>
    public static IlgpuBackend CreateCpu(int warpSize = 4)
    {
        var cpu = new CPUDevice(warpSize, 1, Math.Max(1, Environment.ProcessorCount));
        var context = Context.Create(builder => builder.CPU(cpu).EnableAlgorithms());
        return new IlgpuBackend(context, context.Devices.Single());
    }

    /// <summary>One line per device ILGPU finds (CUDA, OpenCL and its CPU simulator).</summary>
    public static IReadOnlyList<string> Describe()
    {
        using var context = Context.Create(builder => builder.AllAccelerators());
        return context.Devices.Select(d =>
        {
            string kind = d.AcceleratorType switch { AcceleratorType.Cuda => "cuda", AcceleratorType.OpenCL => "opencl",
                _ => "ilgpu-cpu" };
            // The CPU simulator reports an unbounded size: its memory is the host's.
            string memory = d.AcceleratorType == AcceleratorType.CPU ? "host memory"
                : $"{d.MemorySize / (1024.0 * 1024 * 1024):F1} GiB";
            return $"{kind,-9}  {d.Name}: {memory}, {d.NumMultiprocessors} multiprocessors, warp {d.WarpSize}, " +
                $"up to {d.MaxNumThreadsPerGroup} threads per group";
        }).ToList();
    }
}

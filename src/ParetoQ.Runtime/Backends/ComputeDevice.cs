using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Backends.Reference;

namespace ParetoQ.Runtime.Backends;

/// <summary>
/// The programs' --device choice: a CPU backend, or an ILGPU accelerator. ILGPU compiles its kernels at run time, so
/// only JIT-hosted builds carry it (ParetoQ.Accelerators); NativeAOT builds pass no accelerator factory and say so.
/// </summary>
public static class ComputeDevice
{
    public static readonly string[] Names = ["auto", "cpu", "cuda", "opencl", "ilgpu-cpu"];

    /// <summary>The CPU backend these options ask for: the <see cref="ReferenceBackend"/> in exact mode, else the fast
    /// <see cref="CpuBackend"/>.</summary>
    public static HostBackend Cpu(CpuBackendOptions options) =>
        options.Exact ? new ReferenceBackend(options.Threads) : new CpuBackend(options);

    /// <summary>
    /// The backend for <paramref name="device"/>. <paramref name="accelerators"/> opens the first ILGPU device of a
    /// kind (cuda, opencl, ilgpu-cpu), or returns null when there is none; it throws NotSupportedException when devices
    /// of the kind exist but none can be used. auto takes CUDA, then OpenCL, then the CPU.
    /// </summary>
    public static IComputeBackend Create(string device, CpuBackendOptions cpu, Func<string,
        IComputeBackend?>? accelerators)
    {
        if (!Names.Contains(device)) throw new ArgumentException($"--device {device}: choose one of {string.Join(", ", Names)}");
        if (device == "cpu" || (device == "auto" && (accelerators is null || cpu.Exact))) return Cpu(cpu);
        if (cpu.Exact) throw new ArgumentException($"--exact is a mode of the CPU backend; it cannot be combined with --device {device}");
        if (accelerators is null)
            throw new NotSupportedException($"--device {device} runs through ILGPU, which compiles its kernels at run time and so is not part of " +
                "this NativeAOT build; use the JIT-hosted build of this program (dotnet run -c Release --project src/ParetoQ.Cli or src/ParetoQ.Bench -- ...)");
        if (device == "auto") return Usable("cuda") ?? Usable("opencl") ?? Cpu(cpu);
        return accelerators(device)
            ?? throw new NotSupportedException($"--device {device}: ILGPU found no such device here (paretoq-bench devices lists what it finds)");

        // auto passes over devices that exist but that ILGPU cannot drive; an explicit --device names the reason.
        IComputeBackend? Usable(string kind)
        {
            try { return accelerators(kind); }
            catch (NotSupportedException) { return null; }
        }
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// The kernel path chosen by timing every supported one on this machine, once per CPU model and set of candidates: the
/// choice is kept in a small cache file (<see cref="DefaultCachePath"/>), so later processes read it instead of
/// timing. The widest path is not always the fastest (a core may split 512-bit work in two; llama.cpp's issue #27078
/// lost 3× to a static choice). Where only one vector path is supported, nothing is timed.
/// </summary>
public static class KernelChoice
{
    /// <summary>A file over this size, or one with more entries than <see cref="MaxEntries"/>, is not the cache's own:
    /// ignored and rewritten.</summary>
    private const int MaxCacheBytes = 64 * 1024;
    private const int MaxEntries = 64;

    /// <summary><c>$XDG_CACHE_HOME/paretoq/kernel-paths.tsv</c>, else <c>~/.cache/paretoq/…</c>; null where neither is
    /// known (the choice is then timed in each process).</summary>
    public static string? DefaultCachePath
    {
        get
        {
            string? root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (string.IsNullOrEmpty(root) || !Path.IsPathRooted(root))
            {
                string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
                if (string.IsNullOrEmpty(home)) return null;
                root = Path.Combine(home, ".cache");
            }
            return Path.Combine(root, "paretoq", "kernel-paths.tsv");
        }
    }

    /// <summary>What the choice is keyed by: the CPU model and the paths this process may run (a v3 build offers no
    /// AVX-512 path on the same CPU).</summary>
    public static string MachineKey { get; } =
        $"{CpuModel()} | {RuntimeInformation.ProcessArchitecture} | " +
            $"{string.Join(",", KernelDispatch.Supported.Select(KernelDispatch.Name))}";

    /// <summary>
    /// The fastest supported path: from the cache at <paramref name="cachePath"/> when it names one for
    /// <see cref="MachineKey"/>, otherwise timed here and written there (failures to write are ignored: the cache is an
    /// optimization).
    /// </summary>
    public static KernelPath Choose(string? cachePath)
    {
        var candidates = KernelDispatch.Supported.Where(p => p != KernelPath.Scalar).ToArray();
        if (candidates.Length == 0) return KernelPath.Scalar;
        if (candidates.Length == 1) return candidates[0];
        var entries = cachePath is null ? [] : ReadCache(cachePath);
        if (entries.TryGetValue(MachineKey, out string? cached) && KernelDispatch.TryParse(cached, out var path)
            && candidates.Contains(path))
            return path;
        path = Fastest(candidates);
        if (cachePath is not null)
        {
            entries[MachineKey] = KernelDispatch.Name(path);
            WriteCache(cachePath, entries);
        }
        return path;
    }

    /// <summary>
    /// Times each candidate on what decode and prefill run most: a 2-bit GEMV and a 4-token GEMM over a matrix that
    /// stays in L2 (the arithmetic is what differs between paths; the memory stream is the same), best of five rounds,
    /// the rounds alternating between paths so a noisy neighbour hits them alike. About 50 ms in all.
    /// </summary>
    public static unsafe KernelPath Fastest(IReadOnlyList<KernelPath> candidates)
    {
        var layout = new PackedLayout(WeightFormat.Q2Seq, 512, 1280);
        byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)layout.TotalBytes, 64);
        float* y = (float*)NativeMemory.AlignedAlloc((nuint)(4 * layout.Rows * sizeof(float)), 64);
        try
        {
            var rng = new Random(1);
            var bytes = new Span<byte>(w, (int)layout.TotalBytes);
            rng.NextBytes(bytes[..(int)layout.CodeBytes]);
            MemoryMarshal.Cast<byte, float>(bytes[(int)layout.CodeBytes..]).Fill(0.01f);
            var matrix = new PackedMatrix(layout, w);
            var values = new float[4 * layout.Cols];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
            using var one = new QuantizedActivations(1, layout.Cols);
            using var four = new QuantizedActivations(4, layout.Cols);
            one.Quantize(values.AsSpan(0, layout.Cols), 1, layout.Cols);
            four.Quantize(values, 4, layout.Cols);
            var best = new double[candidates.Count];
            Array.Fill(best, double.MaxValue);
            for (int round = 0; round < 6; round++)
                for (int c = 0; c < candidates.Count; c++)
                {
                    long start = Stopwatch.GetTimestamp();
                    for (int rep = 0; rep < 8; rep++)
                    {
                        LowBitMatMul.Run(candidates[c], matrix, one, 0, matrix.Tiles, y);
                        LowBitMatMul.Run(candidates[c], matrix, four, 0, matrix.Tiles, y);
                    }
                    // The first round warms the caches and compiles the paths.
                    if (round > 0) best[c] = Math.Min(best[c], Stopwatch.GetTimestamp() - start);
                }
            return candidates[Array.IndexOf(best, best.Min())];
        }
        finally
        {
            NativeMemory.AlignedFree(w);
            NativeMemory.AlignedFree(y);
        }
    }

    // key<TAB>path lines. Anything else (a damaged, foreign or oversized file) reads as empty and is rewritten.
    private static Dictionary<string, string> ReadCache(string path)
    {
        var entries = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.Length > MaxCacheBytes) return entries;
            foreach (string line in File.ReadAllLines(path, new UTF8Encoding(false, throwOnInvalidBytes: true)))
            {
                int tab = line.LastIndexOf('\t');
                if (tab <= 0 || entries.Count >= MaxEntries) return [];
                entries[line[..tab]] = line[(tab + 1)..];
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DecoderFallbackException)
        {
            entries.Clear();
        }
        return entries;
    }

    private static void WriteCache(string path, Dictionary<string, string> entries)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var text = new StringBuilder();
            foreach (var (key, value) in entries.TakeLast(MaxEntries))
                text.Append(key.Replace('\t', ' ').Replace('\n', ' ')).Append('\t').Append(value).Append('\n');
            AtomicFile.Write(path, overwrite: true, s => s.Write(Encoding.UTF8.GetBytes(text.ToString())));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    // The model name from /proc/cpuinfo on Linux (vendor, family and model where the name is missing); elsewhere the
    // architecture and core count.
    public static string CpuModel()
    {
        try
        {
            if (OperatingSystem.IsLinux() && File.Exists("/proc/cpuinfo"))
            {
                var fields = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (string line in File.ReadLines("/proc/cpuinfo").Take(64))
                {
                    int colon = line.IndexOf(':');
                    if (colon > 0) fields.TryAdd(line[..colon].Trim(), line[(colon + 1)..].Trim());
                }
                string[] parts = [.. new[] { "vendor_id", "cpu family", "model", "model name", "CPU implementer",
                    "CPU part", "CPU variant" }.Where(fields.ContainsKey).Select(k => fields[k])];
                if (parts.Length > 0) return string.Join(" ", parts).Replace('\t', ' ');
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return $"{RuntimeInformation.OSArchitecture} x{Environment.ProcessorCount}";
    }
}

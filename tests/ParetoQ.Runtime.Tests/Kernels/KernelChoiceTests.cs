using ParetoQ.Runtime.Kernels;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

public sealed class KernelChoiceTests(ITestOutputHelper output)
{
    private static KernelPath[] VectorPaths => [.. KernelDispatch.Supported.Where(p => p != KernelPath.Scalar)];

    private static string? CachedChoice(string cache) => File.ReadAllLines(cache)
        .Where(l => l.StartsWith(KernelChoice.MachineKey + "\t", StringComparison.Ordinal))
        .Select(l => l[(l.LastIndexOf('\t') + 1)..]).SingleOrDefault();

    [Fact]
    public void The_timed_choice_is_a_supported_path_and_is_kept_per_cpu_model()
    {
        using var dir = new TempDir();
        string cache = Path.Combine(dir.Path, "nested", "kernel-paths.tsv");
        var chosen = KernelChoice.Choose(cache);
        output.WriteLine($"{KernelChoice.MachineKey}: {KernelDispatch.Name(chosen)}");
        Assert.Contains(chosen, KernelDispatch.Supported);
        if (VectorPaths.Length < 2)
        {
            Assert.Equal(VectorPaths.DefaultIfEmpty(KernelPath.Scalar).Single(), chosen);
            Assert.False(File.Exists(cache), "nothing to time with one vector path, so nothing to cache");
            return;
        }
        Assert.Equal(KernelDispatch.Name(chosen), CachedChoice(cache));
        // Another machine's line survives a rewrite.
        File.AppendAllText(cache, "some other cpu | X64 | scalar,avx2\tavx2\n");
        Assert.Equal(chosen, KernelChoice.Choose(cache));
        Assert.Contains("some other cpu", File.ReadAllText(cache));
    }

    [Fact]
    public void A_cached_choice_is_used_without_timing_again()
    {
        if (VectorPaths.Length < 2)
        {
            output.WriteLine("one vector path on this machine: nothing is cached or read");
            return;
        }
        using var dir = new TempDir();
        string cache = dir.File("kernel-paths.tsv");
        // The slowest vector path would never be timed fastest on purpose: reading it back proves the cache is used.
        foreach (var path in VectorPaths)
        {
            File.WriteAllText(cache, $"{KernelChoice.MachineKey}\t{KernelDispatch.Name(path)}\n");
            Assert.Equal(path, KernelChoice.Choose(cache));
        }
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("unsupported")]
    [InlineData("unknown")]
    [InlineData("invalid-utf8")]
    [InlineData("oversized")]
    [InlineData("directory")]
    public void A_damaged_or_foreign_cache_is_timed_again_and_rewritten(string kind)
    {
        using var dir = new TempDir();
        string cache = dir.File("kernel-paths.tsv");
        string key = KernelChoice.MachineKey;
        var unsupported = Enum.GetValues<KernelPath>().Where(p => !KernelDispatch.IsSupported(p)).ToArray();
        switch (kind)
        {
            case "garbage": File.WriteAllBytes(cache, [0, 1, 2, 3, 255, 10, 9, 9, 9]); break;
            case "unsupported":
                string name = KernelDispatch.Name(unsupported.FirstOrDefault(KernelPath.Scalar));
                File.WriteAllText(cache, $"{key}\t{name}\n");
                break;
            case "unknown": File.WriteAllText(cache, $"{key}\tavx1024\n"); break;
            case "invalid-utf8": File.WriteAllBytes(cache, [.. "x\t"u8, 0xC3, 0x28, (byte)'\n']); break;
            case "oversized": File.WriteAllText(cache, $"{key}\tscalar\n" + new string('#', 100_000)); break;
            case "directory": Directory.CreateDirectory(cache); break;
        }
        var chosen = KernelChoice.Choose(cache);
        Assert.Contains(chosen, VectorPaths.DefaultIfEmpty(KernelPath.Scalar));
        if (VectorPaths.Length >= 2 && kind != "directory")
            Assert.Equal(KernelDispatch.Name(chosen), CachedChoice(cache));
    }
}

using System.Runtime.InteropServices;

namespace ParetoQ.Runtime.Format;

/// <summary>How an open .pq file's bytes are held.</summary>
public enum WeightMemory
{
    /// <summary><see cref="Resident"/> where it pays: Linux with transparent huge pages, files of at least
    /// <see cref="ResidentMemory.AutoMinBytes"/>. <see cref="Mapped"/> elsewhere.</summary>
    Auto,
    /// <summary>Zero-copy views into a read-only memory map of the page cache: an instant open, pages shared with other
    /// processes that the OS may drop and read again.</summary>
    Mapped,
    /// <summary>
    /// Read once into private memory advised for transparent huge pages (llama.cpp's <c>--no-mmap</c>). Opening reads
    /// the whole file, and the memory is the process's own. In exchange a decode step, which streams every weight,
    /// takes one TLB entry per 2 MiB instead of per 4 KiB, and what was validated can no longer change under the
    /// engine. docs/BENCHMARKS.md has the decode speeds of both.
    /// </summary>
    Resident,
}

/// <summary>Private, huge-page-advised memory for <see cref="WeightMemory.Resident"/> files.</summary>
public static unsafe partial class ResidentMemory
{
    /// <summary>Smallest file <see cref="WeightMemory.Auto"/> makes resident: below it the weights fit the reach of
    /// a core's 4 KiB TLB entries anyway.</summary>
    public const long AutoMinBytes = 32L << 20;
    private const nuint HugePage = 2 << 20;
    private const int MadvHugePage = 14; // Linux <sys/mman.h>

    /// <summary>What <see cref="WeightMemory.Auto"/> means for a file of <paramref name="bytes"/> on this
    /// machine.</summary>
    public static WeightMemory Resolve(WeightMemory requested, long bytes) => requested != WeightMemory.Auto
        ? requested
        : bytes >= AutoMinBytes && TransparentHugePages ? WeightMemory.Resident : WeightMemory.Mapped;

    /// <summary>Linux with transparent huge pages on (<c>always</c> or <c>madvise</c>), Android excluded: there
    /// anonymous memory counts against the app where the page cache does not.</summary>
    public static bool TransparentHugePages { get; } = ReadTransparentHugePages();

    private static bool ReadTransparentHugePages()
    {
        if (!OperatingSystem.IsLinux() || OperatingSystem.IsAndroid()) return false;
        try
        {
            string mode = File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled");
            return mode.Contains("[always]", StringComparison.Ordinal) || mode.Contains("[madvise]",
                StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Allocates <paramref name="bytes"/>, 2 MiB-aligned and advised for huge pages where the OS has
    /// them.</summary>
    public static byte* Allocate(long bytes)
    {
        nuint size = ((nuint)bytes + HugePage - 1) & ~(HugePage - 1);
        byte* p = (byte*)NativeMemory.AlignedAlloc(size, HugePage);
        if (TransparentHugePages)
        {
            try
            {
                _ = Madvise(p, size, MadvHugePage); // advice only: without it the memory is plain pages
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
            }
        }
        return p;
    }

    public static void Free(byte* p) => NativeMemory.AlignedFree(p);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}

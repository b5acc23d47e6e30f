namespace ParetoQ.Runtime.Format;

/// <summary>The output file exists and the caller did not ask to replace it (each program names its own flag for
/// that).</summary>
public sealed class OutputExistsException(string path) : IOException($"{path} already exists")
{
    public string OutputPath { get; } = path;
}

/// <summary>
/// Writes a file under a temporary name beside its destination and renames it into place only when complete and
/// checked, so an interrupted or refused write never leaves a half-file under the final name or replaces a good one.
/// </summary>
public static class AtomicFile
{
    /// <param name="write">Writes the whole content; the stream is flushed to disk afterwards.</param>
    /// <param name="check">Validates the finished temporary file (given its path) before the rename; throws to refuse
    /// it.</param>
    public static void Write(string path, bool overwrite, Action<FileStream> write, Action<string>? check = null)
    {
        if (!overwrite
            && File.Exists(path)) throw new OutputExistsException(path);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new IOException($"{path} is a directory");
        string temp = Path.Combine(Path.GetDirectoryName(full)!,
            $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            check?.Invoke(temp);
            File.Move(temp, full, overwrite);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Writes zeros until <paramref name="stream"/> reaches <paramref name="position"/> (alignment
    /// padding).</summary>
    public static void ZeroFill(Stream stream, long position)
    {
        Span<byte> zeros = stackalloc byte[64];
        while (stream.Position < position) stream.Write(zeros[..(int)Math.Min(zeros.Length,
            position - stream.Position)]);
    }
}

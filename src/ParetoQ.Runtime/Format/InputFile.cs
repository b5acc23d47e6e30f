using Microsoft.Win32.SafeHandles;

namespace ParetoQ.Runtime.Format;

/// <summary>
/// Every file the engine and its programs read from a user's path is opened here. A directory, a pipe or a device is
/// refused by name before anything opens it (opening a FIFO blocks until a writer comes; /dev/zero never ends), and
/// whole-file reads are bounded. Each reader passes its own exception factory, which prefixes the path, so errors keep
/// their domain (format, config, tokenizer, checkpoint).
/// </summary>
public static class InputFile
{
    /// <summary>Refuses <paramref name="path"/> unless it is a non-empty regular file; returns its length.</summary>
    public static long Check(string path, Func<string, Exception> error)
    {
        if (Directory.Exists(path)) throw error("is a directory, not a file");
        var info = new FileInfo(path);
        if (!info.Exists) throw error("does not exist");
        // Pipes, sockets and character devices report size 0, like an empty file; neither holds anything to read.
        if (info.Length == 0) throw error("is empty, or not a regular file (a pipe or a device)");
        return info.Length;
    }

    /// <summary>Opens a checked file for positional reads.</summary>
    public static SafeFileHandle OpenHandle(string path, Func<string, Exception> error)
    {
        Check(path, error);
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw error($"cannot open: {Reason(e)}");
        }
    }

    /// <summary>Opens a checked file as a stream.</summary>
    public static FileStream Open(string path, Func<string, Exception> error) =>
        new(OpenHandle(path, error), FileAccess.Read, bufferSize: 0);

    /// <summary>The whole file, refused when it is larger than <paramref name="maxBytes"/> (a bound each caller
    /// states for its kind of file).</summary>
    public static byte[] ReadAll(string path, long maxBytes, Func<string, Exception> error)
    {
        using var handle = OpenHandle(path, error);
        long length;
        try
        {
            length = RandomAccess.GetLength(handle);
        }
        catch (IOException e)
        {
            throw error($"cannot read: {Reason(e)}");
        }
        if (length > maxBytes) throw error($"is {length} bytes, more than the {maxBytes} this kind of file may be");
        var bytes = new byte[length];
        int done = 0;
        try
        {
            while (done < bytes.Length)
            {
                int n = RandomAccess.Read(handle, bytes.AsSpan(done), done);
                if (n == 0) throw error($"shrank to {done} bytes while it was read");
                done += n;
            }
        }
        catch (IOException e)
        {
            throw error($"cannot read: {Reason(e)}");
        }
        return bytes;
    }

    /// <summary>The framework's reason without the absolute path it quotes.</summary>
    public static string Reason(Exception e) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        FileNotFoundException => "does not exist",
        DirectoryNotFoundException => "a directory on its path does not exist",
        _ => e.Message,
    };
}

using System.Runtime.InteropServices;
using System.Text;
using ParetoQ.Abi;

namespace ParetoQ.Interop;

/// <summary>A libparetoq call that failed: its status and the library's message (pq_last_error).</summary>
public sealed class ParetoQException(PqStatus status, string message) : Exception(message)
{
    public PqStatus Status { get; } = status;

    internal static unsafe int Check(int result)
    {
        if (result >= 0) return result;
        var status = result == PqAbi.SizeError ? PqStatus.InvalidArgument : (PqStatus)result;
        string message = Marshal.PtrToStringUTF8((nint)NativeMethods.LastError()) ?? "";
        throw new ParetoQException(Enum.IsDefined(status) ? status : PqStatus.Internal, message);
    }

    /// <summary>A size query's answer (0 or minus the count needed), or the error it stands for.</summary>
    internal static int CheckNegativeSize(int result) => result == PqAbi.SizeError ? Check(result) : result;
}

public sealed record ModelInfo(string Architecture, string Bits, int VocabSize, int MaxContext, int Layers,
    int HiddenSize, int BosId, int EosId, long FileBytes, long Parameters);

/// <summary>
/// A .pq model loaded by libparetoq. Thread-safe: share one across threads and create a <see cref="ParetoQContext"/>
/// per conversation.
/// </summary>
public sealed unsafe class ParetoQModel : IDisposable
{
    private readonly ModelHandle _handle;

    public ModelInfo Info { get; }

    /// <summary>The library's version string, e.g. "ParetoQ.Runtime 0.6.0 (abi 1, kernels avx512gfni)".</summary>
    public static string LibraryVersion => Marshal.PtrToStringUTF8((nint)NativeMethods.VersionString()) ?? "";

    private ParetoQModel(ModelHandle handle)
    {
        _handle = handle;
        PqModelInfo info = new() { Size = (uint)sizeof(PqModelInfo) };
        ParetoQException.Check(NativeMethods.ModelGetInfo(handle, &info));
        Info = new ModelInfo(FixedText(info.Architecture, 32), FixedText(info.Bits, 16), info.VocabSize,
            info.MaxContext, info.Layers, info.HiddenSize, info.BosId, info.EosId, info.FileBytes, info.Parameters);
    }

    /// <summary><see cref="Load"/> on the thread pool (checksums read the whole file).</summary>
    public static Task<ParetoQModel> LoadAsync(string path, bool verifyChecksums = true,
        CancellationToken cancellation = default) =>
        Task.Run(() => Load(path, verifyChecksums), cancellation);

    /// <summary>Loads a .pq file; throws <see cref="ParetoQException"/> naming the problem, and refuses a library of
    /// another ABI.</summary>
    public static ParetoQModel Load(string path, bool verifyChecksums = true)
    {
        uint abi = NativeMethods.AbiVersion();
        if (abi != PqAbi.Version) throw new ParetoQException(PqStatus.Unsupported,
            $"libparetoq has ABI {abi}; this binding needs {PqAbi.Version}");
        var parameters = NativeMethods.ModelDefaultParams();
        parameters.VerifyChecksums = verifyChecksums ? 1 : 0;
        int status = NativeMethods.ModelLoad(path, &parameters, out var handle);
        if (status != 0)
        {
            handle.Dispose();
            ParetoQException.Check(status);
        }
        return new ParetoQModel(handle);
    }

    public ParetoQContext CreateContext(int threads = 0, int contextLength = 0, PqKvType kvCache = PqKvType.Int8) =>
        new(_handle, threads, contextLength, kvCache);

    public int[] Tokenize(string text, bool addBos = true)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        fixed (byte* p = utf8)
        {
            int needed = -ParetoQException.CheckNegativeSize(NativeMethods.Tokenize(_handle, p, utf8.Length, addBos ? 1
                : 0, null, 0));
            var tokens = new int[needed];
            fixed (int* t = tokens)
                ParetoQException.Check(NativeMethods.Tokenize(_handle, p, utf8.Length, addBos ? 1 : 0, t,
                    tokens.Length));
            return tokens;
        }
    }

    public string Detokenize(ReadOnlySpan<int> tokens)
    {
        fixed (int* t = tokens)
        {
            int needed = -ParetoQException.CheckNegativeSize(NativeMethods.Detokenize(_handle, t, tokens.Length, null,
                0));
            var text = new byte[needed];
            fixed (byte* p = text)
            {
                int length = ParetoQException.Check(NativeMethods.Detokenize(_handle, t, tokens.Length, p,
                    text.Length));
                return Encoding.UTF8.GetString(text, 0, length);
            }
        }
    }

    public void Dispose() => _handle.Dispose();

    private static string FixedText(byte* field, int capacity) =>
        Encoding.UTF8.GetString(field, new ReadOnlySpan<byte>(field, capacity).IndexOf((byte)0) is var n and >= 0 ? n
            : capacity);
}

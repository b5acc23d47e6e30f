using System.Runtime.InteropServices;

// The C ABI's types, mirroring native/include/paretoq.h field for field. Compiled into libparetoq and into the
// ParetoQ.Interop binding, so both sides share one definition; AbiTests pins every size and offset on the C# side and
// native/tests/test_abi.c on the C side.
namespace ParetoQ.Abi;

public static class PqAbi
{
    public const uint Version = 1;
    /// <summary>Returned by the buffer-filling functions on an error.</summary>
    public const int SizeError = int.MinValue;
}

public enum PqStatus
{
    Ok = 0,
    InvalidArgument = -1,
    InvalidHandle = -2,
    IO = -3,
    ModelFormat = -4,
    Tokenizer = -5,
    ContextFull = -6,
    Busy = -7,
    OutOfMemory = -8,
    Unsupported = -9,
    Internal = -100,
}

public enum PqKvType { Int8 = 0, F32 = 1 }

public enum PqStopReason { MaxTokens = 0, EndOfSequence = 1, ContextFull = 3, Cancelled = 4 }

[StructLayout(LayoutKind.Sequential)]
public struct PqModelParams
{
    public uint Size;
    public int VerifyChecksums;
}

[StructLayout(LayoutKind.Sequential)]
public struct PqContextParams
{
    public uint Size;
    public int Threads;
    public int ContextLength;
    public int KvType;
    public int Exact;
}

[StructLayout(LayoutKind.Sequential)]
public struct PqSamplerParams
{
    public uint Size;
    public float Temperature;
    public int TopK;
    public float TopP;
    public float MinP;
    public float RepeatPenalty;
    public int RepeatLastN;
    public ulong Seed;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct PqModelInfo
{
    public uint Size;
    public int VocabSize;
    public int MaxContext;
    public int Layers;
    public int HiddenSize;
    public int BosId;
    public int EosId;
    public int Reserved;
    public long FileBytes;
    public long Parameters;
    public fixed byte Architecture[32];
    public fixed byte Bits[16];
}

[StructLayout(LayoutKind.Sequential)]
public struct PqGenerationStats
{
    public uint Size;
    public int PromptTokens;
    public int GeneratedTokens;
    public int StopReason;
    public double PrefillTokensPerSecond;
    public double DecodeTokensPerSecond;
}

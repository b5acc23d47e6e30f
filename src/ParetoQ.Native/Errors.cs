using System.Runtime.InteropServices;
using System.Text;
using ParetoQ.Abi;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Native;

/// <summary>pq_last_error: one UTF-8 message per thread, in native memory so C can hold the pointer.</summary>
internal static unsafe class Errors
{
    [ThreadStatic] private static byte* t_message;

    private static readonly byte* s_none = Persistent("");

    public static byte* Message => t_message != null ? t_message : s_none;

    public static int Set(PqStatus status, string function, string message)
    {
        byte* old = t_message;
        t_message = Persistent($"{function}: {message}");
        if (old != null) NativeMemory.Free(old);
        return (int)status;
    }

    /// <summary>A NUL-terminated UTF-8 copy in native memory, which stays where it is until freed.</summary>
    public static byte* Persistent(string text)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        var copy = (byte*)NativeMemory.Alloc((nuint)utf8.Length + 1);
        utf8.CopyTo(new Span<byte>(copy, utf8.Length));
        copy[utf8.Length] = 0;
        return copy;
    }

    /// <summary>The status an exception stands for, with its message recorded; nothing ever propagates to C.</summary>
    public static int From(string function, Exception e) => e switch
    {
        ArgumentException => Set(PqStatus.InvalidArgument, function, e.Message),
        PqFormatException or ModelConfigException => Set(PqStatus.ModelFormat, function, e.Message),
        TokenizerException => Set(PqStatus.Tokenizer, function, e.Message),
        ContextLengthExceededException => Set(PqStatus.ContextFull, function, e.Message),
        OutOfMemoryException => Set(PqStatus.OutOfMemory, function, "out of memory"),
        NotSupportedException => Set(PqStatus.Unsupported, function, e.Message),
        IOException or UnauthorizedAccessException => Set(PqStatus.IO, function, e.Message),
        _ => Set(PqStatus.Internal, function, $"internal error ({e.GetType().Name}): {e.Message}"),
    };

    public static int NoHandle(string function, string what) =>
        Set(PqStatus.InvalidHandle, function, $"the {what} handle is null, freed or not a {what}");
}

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
    /// <summary>A thread's message. When the thread exits, its thread-static reference goes and the finalizer frees the
    /// text.</summary>
    private sealed class ThreadMessage
    {
        public byte* Text;

        public ThreadMessage() => Interlocked.Increment(ref s_liveThreadMessages);

        ~ThreadMessage()
        {
            NativeMemory.Free(Text);
            Interlocked.Decrement(ref s_liveThreadMessages);
        }
    }

    [ThreadStatic] private static ThreadMessage? t_message;
    private static long s_liveThreadMessages;

    private static readonly byte* s_none = Persistent("");

    public static byte* Message => t_message is { } m ? m.Text : s_none;

    /// <summary>Threads whose message has not been freed yet (the test of freeing at thread exit reads it).</summary>
    internal static long LiveThreadMessages => Interlocked.Read(ref s_liveThreadMessages);

    public static int Set(PqStatus status, string function, string message)
    {
        var slot = t_message ??= new ThreadMessage();
        byte* old = slot.Text;
        slot.Text = Persistent($"{function}: {message}");
        NativeMemory.Free(old);
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

using System.Runtime.InteropServices;
using ParetoQ.Abi;
using ParetoQ.Native;

namespace ParetoQ.Runtime.Tests;

/// <summary>pq_last_error's per-thread messages: each thread sees its own, and a thread's message is freed after it
/// exits.</summary>
public sealed class NativeErrorTests
{
    [Fact]
    public unsafe void Each_threads_last_error_is_its_own_and_is_freed_after_the_thread_exits()
    {
        long before = Errors.LiveThreadMessages;
        var seen = new string?[32];
        var threads = Enumerable.Range(0, seen.Length).Select(i => new Thread(() =>
        {
            Errors.Set(PqStatus.InvalidArgument, "pq_first", $"thread {i}");
            Errors.Set(PqStatus.IO, "pq_second", $"thread {i}"); // replaces (and frees) the first
            seen[i] = Marshal.PtrToStringUTF8((nint)Errors.Message);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        for (int i = 0; i < seen.Length; i++) Assert.Equal($"pq_second: thread {i}", seen[i]);
        Assert.Equal("", Marshal.PtrToStringUTF8((nint)Errors.Message)); // this thread never failed

        // The exited threads' messages become garbage; their finalizers free the native text.
        for (int round = 0; round < 20 && Errors.LiveThreadMessages > before; round++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.Equal(before, Errors.LiveThreadMessages);
    }
}

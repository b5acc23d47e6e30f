using System.Runtime.InteropServices;
using System.Text;
using ParetoQ.Abi;
using ParetoQ.Native;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

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

    [Fact]
    public unsafe void A_lone_surrogate_in_the_metadata_is_a_format_error_through_the_c_abi()
    {
        using var dir = new TempDir();
        TestModelGenerator.Write(dir.File("m.pq"), TestModelGenerator.MobileLlm(), WeightFormat.Q2Seq,
            WeightFormat.F32, seed: 4);
        File.WriteAllBytes(dir.File("s.pq"), PqBytes.WithMetadata(File.ReadAllBytes(dir.File("m.pq")),
            m => m.Replace("\"tool\": \"", "\"tool\": \"\\ud800")));
        byte[] path = Encoding.UTF8.GetBytes(dir.File("s.pq") + "\0");
        nint model = -1;
        int status = 0;
        string message = "";
        // On a thread of its own: the other test expects this test thread's last error to be empty.
        var thread = new Thread(() =>
        {
            delegate* unmanaged<byte*, PqModelParams*, nint*, int> load = &Exports.ModelLoad;
            nint loaded;
            fixed (byte* p = path) status = load(p, null, &loaded);
            model = loaded;
            message = Marshal.PtrToStringUTF8((nint)Errors.Message)!;
        });
        long before = Errors.LiveThreadMessages;
        thread.Start();
        thread.Join();
        // Let the exited thread's message be freed, so the other test of this class counts from a settled state.
        for (int round = 0; round < 20 && Errors.LiveThreadMessages > before; round++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.True(status == (int)PqStatus.ModelFormat, $"status {status}: {message}");
        Assert.Contains("unpaired UTF-16 surrogate", message);
        Assert.Equal(0, model);
    }
}

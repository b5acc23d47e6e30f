using System.Runtime.InteropServices;
using System.Text;
using ParetoQ.Abi;

namespace ParetoQ.Interop;

public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, PqStopReason StopReason,
    double PrefillTokensPerSecond, double DecodeTokensPerSecond);

/// <summary>
/// One conversation (a KV cache and its worker threads) on a <see cref="ParetoQModel"/>. Use it from one thread at a
/// time; contexts on different threads run in parallel.
/// </summary>
public sealed unsafe partial class ParetoQContext : IDisposable
{
    private readonly ContextHandle _handle;

    internal ParetoQContext(ModelHandle model, int threads, int contextLength, PqKvType kvCache)
    {
        var parameters = NativeMethods.ContextDefaultParams();
        parameters.Threads = threads;
        parameters.ContextLength = contextLength;
        parameters.KvType = (int)kvCache;
        int status = NativeMethods.ContextNew(model, &parameters, out _handle);
        if (status != 0)
        {
            _handle.Dispose();
            ParetoQException.Check(status);
        }
    }

    public int Position => ParetoQException.Check(NativeMethods.ContextPosition(_handle));
    public int Length => ParetoQException.Check(NativeMethods.ContextLength(_handle));

    /// <summary>The library's default sampler settings (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat
    /// penalty 1.1).</summary>
    public static PqSamplerParams DefaultSampler => NativeMethods.SamplerDefaultParams();

    public void Reset() => ParetoQException.Check(NativeMethods.ContextReset(_handle));

    /// <summary>Feeds tokens after those already in the context.</summary>
    public void Decode(ReadOnlySpan<int> tokens)
    {
        fixed (int* t = tokens) ParetoQException.Check(NativeMethods.Decode(_handle, t, tokens.Length));
    }

    /// <summary>A copy of the logits after the last fed token.</summary>
    public float[] Logits()
    {
        int count;
        float* logits = NativeMethods.GetLogits(_handle, &count);
        if (logits == null) ParetoQException.Check((int)PqStatus.InvalidArgument);
        return new ReadOnlySpan<float>(logits, count).ToArray();
    }

    /// <summary>The next token from the current logits (not fed: pass it to <see cref="Decode"/>).</summary>
    public int Sample(PqSamplerParams sampler) => ParetoQException.Check(NativeMethods.Sample(_handle, &sampler));

    /// <summary>
    /// Generates after <paramref name="prompt"/>, handing each piece of text to <paramref name="onText"/> as soon as it
    /// is final; return false from it to stop. The context keeps the conversation for the next call.
    /// </summary>
    public GenerationStats Generate(string prompt, int maxTokens, Func<string, bool>? onText = null,
        PqSamplerParams? sampler = null)
    {
        var parameters = sampler ?? DefaultSampler;
        byte[] utf8 = Encoding.UTF8.GetBytes(prompt);
        var state = new CallbackState(onText);
        var handle = GCHandle.Alloc(state);
        try
        {
            PqGenerationStats stats = new() { Size = (uint)sizeof(PqGenerationStats) };
            int status;
            fixed (byte* p = utf8)
                status = NativeMethods.Generate(_handle, p, utf8.Length, &parameters, maxTokens,
                    onText is null ? null : &OnText, (void*)GCHandle.ToIntPtr(handle), &stats);
            state.Failure?.Throw();
            ParetoQException.Check(status);
            return new GenerationStats(stats.PromptTokens, stats.GeneratedTokens, (PqStopReason)stats.StopReason,
                stats.PrefillTokensPerSecond, stats.DecodeTokensPerSecond);
        }
        finally
        {
            handle.Free();
        }
    }

    public void Dispose() => _handle.Dispose();

    private sealed class CallbackState(Func<string, bool>? onText)
    {
        public Func<string, bool>? OnText { get; } = onText;
        public System.Runtime.ExceptionServices.ExceptionDispatchInfo? Failure { get; set; }
    }

    // Called from native code: an exception must not unwind through it, so it stops generation and is rethrown
    // afterwards.
    [UnmanagedCallersOnly]
    private static int OnText(byte* text, int length, void* userData)
    {
        var state = (CallbackState)GCHandle.FromIntPtr((nint)userData).Target!;
        try
        {
            return state.OnText!(Encoding.UTF8.GetString(text, length)) ? 0 : 1;
        }
        catch (Exception e)
        {
            state.Failure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
            return 1;
        }
    }
}

using ParetoQ.Abi;

namespace ParetoQ.Interop;

// The async methods: an unsafe context cannot await, so they live in this part of the class.
public sealed partial class ParetoQContext
{
    /// <summary>
    /// <see cref="Generate"/> on the thread pool. Cancelling <paramref name="cancellation"/> stops generation at the
    /// next piece of text and throws <see cref="OperationCanceledException"/>; the context keeps what was generated.
    /// </summary>
    public async Task<GenerationStats> GenerateAsync(string prompt, int maxTokens, Action<string>? onText = null,
        PqSamplerParams? sampler = null, CancellationToken cancellation = default)
    {
        cancellation.ThrowIfCancellationRequested();
        var stats = await Task.Run(() => Generate(prompt, maxTokens, piece =>
        {
            if (cancellation.IsCancellationRequested) return false;
            onText?.Invoke(piece);
            return true;
        }, sampler), CancellationToken.None);
        cancellation.ThrowIfCancellationRequested();
        return stats;
    }

    /// <summary>
    /// The generated text as an async stream of pieces. Generation runs at most 16 pieces ahead of the consumer;
    /// cancelling, or leaving the loop, stops it.
    /// </summary>
    public async IAsyncEnumerable<string> StreamAsync(string prompt, int maxTokens, PqSamplerParams? sampler = null,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var pieces = System.Threading.Channels.Channel.CreateBounded<string>(16);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var run = Task.Run(() =>
        {
            try
            {
                return Generate(prompt, maxTokens, piece =>
                {
                    try { pieces.Writer.WriteAsync(piece, stop.Token).AsTask().GetAwaiter().GetResult(); }
                    catch (OperationCanceledException) { return false; }
                    return !stop.IsCancellationRequested;
                }, sampler);
            }
            finally { pieces.Writer.Complete(); }
        }, CancellationToken.None);
        try
        {
            await foreach (var piece in pieces.Reader.ReadAllAsync(CancellationToken.None)) yield return piece;
            await run;
            cancellation.ThrowIfCancellationRequested();
        }
        finally
        {
            stop.Cancel();
            try { await run; } catch (Exception) when (run.IsFaulted) { }
        }
    }
}

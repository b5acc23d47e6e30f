using System.Diagnostics;
using System.Runtime.CompilerServices;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Generation;

public enum StopReason { MaxTokens, EndOfSequence, StopString, ContextFull, Cancelled }

public sealed record GenerationOptions
{
    public int MaxTokens { get; init; } = 256;
    public SamplerOptions Sampler { get; init; } = new();
    /// <summary>Generation stops before the first occurrence of any of these; they are not emitted.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Token ids that end generation (the model's EOS ids); they are not emitted.</summary>
    public IReadOnlyList<int> EosIds { get; init; } = [];
}

/// <param name="Tokens">The generated ids, each fed to the session (an EOS that ended generation is not among
/// them).</param>
public sealed record GenerationResult(string Text, int PromptTokens, IReadOnlyList<int> Tokens, TimeSpan Prefill,
    TimeSpan Decode, StopReason Reason)
{
    public int GeneratedTokens => Tokens.Count;
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(Prefill.TotalSeconds, 1e-9);
    public double DecodeTokensPerSecond => GeneratedTokens / Math.Max(Decode.TotalSeconds, 1e-9);
}

/// <summary>A piece of streamed text, or (the last update) the finished generation's result.</summary>
public sealed record GenerationUpdate(string Text, GenerationResult? Result);

/// <summary>
/// The generation loop: prefill the prompt, then sample → stream text → feed the token back, until EOS, a stop string,
/// MaxTokens, the end of the context, or cancellation. Text is streamed through a callback as soon as it is final
/// (never half a character, never the start of what may become a stop string).
/// </summary>
public sealed class Generator(Session session, ITokenizer tokenizer)
{
    public GenerationResult Generate(ReadOnlySpan<int> prompt, GenerationOptions options, Action<string>? onText = null,
        CancellationToken cancellation = default)
    {
        if (prompt.IsEmpty) throw new ArgumentException("the prompt is empty", nameof(prompt));
        if (options.MaxTokens < 0) throw new ArgumentException(
            $"max tokens {options.MaxTokens} must be ≥ 0");
        if (session.Position + prompt.Length > session.ContextLength)
            throw new ContextLengthExceededException($"the prompt has {prompt.Length} tokens; with {session.Position} already in context that exceeds the context length {session.ContextLength}");
        var sampler = new Sampler(session.Config.VocabSize, options.Sampler);
        // The history never outgrows the context, whatever MaxTokens asks for (int.MaxValue means "until it is full").
        var history = new List<int>((int)Math.Min((long)prompt.Length + options.MaxTokens, session.ContextLength));
        history.AddRange(prompt);
        var decoder = new StreamingDecoder(tokenizer);
        var text = new StopStringFilter(options.StopStrings, onText);

        var clock = Stopwatch.StartNew();
        var logits = session.Forward(prompt);
        var prefill = clock.Elapsed;
        clock.Restart();
        int generated = 0;
        var reason = StopReason.MaxTokens;
        while (generated < options.MaxTokens)
        {
            if (cancellation.IsCancellationRequested) { reason = StopReason.Cancelled; break; }
            int next = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            if (options.EosIds.Contains(next)) { reason = StopReason.EndOfSequence; break; }
            generated++;
            history.Add(next);
            if (text.Add(decoder.Push(next))) { reason = StopReason.StopString; break; }
            if (session.Position >= session.ContextLength) { reason = StopReason.ContextFull; break; }
            // the cache holds every emitted token, so a chat can continue this session
            logits = session.Forward([next]);
        }
        if (reason != StopReason.StopString) text.Finish(decoder.Flush());
        return new GenerationResult(text.Text, prompt.Length, history.GetRange(prompt.Length, generated), prefill,
            clock.Elapsed, reason);
    }

    /// <summary>Text pieces the generator may run ahead of a stream's consumer.</summary>
    public const int StreamAhead = 16;

    /// <summary>
    /// The same loop as an async stream: text pieces as they become final, then one update with the result (its
    /// statistics and stop reason). It runs on the thread pool at most <see cref="StreamAhead"/> pieces ahead of the
    /// consumer, so a consumer that stops reading, cancels, or abandons the enumeration stops the generation within a
    /// token instead of leaving it to run on.
    /// </summary>
    public async IAsyncEnumerable<GenerationUpdate> StreamAsync(int[] prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var pieces = System.Threading.Channels.Channel.CreateBounded<string>(StreamAhead);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var run = Task.Run(() =>
        {
            try
            {
                return Generate(prompt, options, piece =>
                {
                    try { pieces.Writer.WriteAsync(piece, stop.Token).AsTask().GetAwaiter().GetResult(); }
                    catch (OperationCanceledException) { } // the loop sees the same token before the next token
                }, stop.Token);
            }
            finally { pieces.Writer.Complete(); }
        }, CancellationToken.None);
        try
        {
            await foreach (var piece in pieces.Reader.ReadAllAsync(CancellationToken.None))
                yield return new GenerationUpdate(piece, null);
            yield return new GenerationUpdate("", await run);
        }
        finally
        {
            // An abandoned enumeration (an exception or break in the consumer) stops the generator and waits for it,
            // so the session is free again when this returns.
            stop.Cancel();
            try { await run; } catch (Exception) when (run.IsFaulted || run.IsCanceled) { }
        }
    }

    /// <summary>Holds back text that could still grow into a stop string; cuts the output at the first stop
    /// string.</summary>
    private sealed class StopStringFilter(IReadOnlyList<string> stops, Action<string>? emit)
    {
        private readonly System.Text.StringBuilder _all = new();
        private int _emitted;

        public string Text => _all.ToString(0, _emitted);

        /// <summary>Adds text; returns true when a stop string has appeared (output ends before it).</summary>
        public bool Add(string piece)
        {
            _all.Append(piece);
            if (stops.Count == 0)
            {
                EmitUpTo(_all.Length);
                return false;
            }
            string all = _all.ToString();
            foreach (var stop in stops)
            {
                int at = stop.Length == 0 ? -1
                    : all.IndexOf(stop, Math.Max(0, _emitted - stop.Length + 1), StringComparison.Ordinal);
                if (at >= 0)
                {
                    EmitUpTo(Math.Max(at, _emitted));
                    return true;
                }
            }
            int hold = 0;
            foreach (var stop in stops)
                for (int k = Math.Min(stop.Length - 1, all.Length - _emitted); k > hold; k--)
                    if (all.AsSpan(all.Length - k).SequenceEqual(stop.AsSpan(0, k))) { hold = k; break; }
            EmitUpTo(all.Length - hold);
            return false;
        }

        public void Finish(string tail)
        {
            _all.Append(tail);
            EmitUpTo(_all.Length);
        }

        private void EmitUpTo(int end)
        {
            if (end <= _emitted) return;
            string piece = _all.ToString(_emitted, end - _emitted);
            _emitted = end;
            emit?.Invoke(piece);
        }
    }
}

using System.Runtime.CompilerServices;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Generation;

public sealed record TextModelOptions
{
    /// <summary>0: min(model maximum, 4096).</summary>
    public int ContextLength { get; init; }
    public KvCacheType KvCache { get; init; } = KvCacheType.Int8;
    /// <summary>0: one per core.</summary>
    public int Threads { get; init; }
}

/// <summary>
/// The engine for applications: load a .pq, then generate from text or chat messages. The model's EOS ids, tokenizer
/// and chat template are used without being passed; every call returns its statistics. Each call starts from an empty
/// context; concurrent calls take turns on the one session.
/// </summary>
public sealed class TextModel : IDisposable
{
    private readonly LanguageModel _model;
    private readonly Session _session;
    private readonly SemaphoreSlim _turn = new(1, 1);

    /// <summary>The file name without its extension.</summary>
    public string Name { get; }
    public ITokenizer Tokenizer { get; }
    public IReadOnlyList<int> EosIds { get; }
    public ChatTemplate ChatTemplate { get; }
    public int ContextLength => _session.ContextLength;

    private TextModel(string path, LanguageModel model, Session session)
    {
        (_model, _session) = (model, session);
        Name = Path.GetFileNameWithoutExtension(path);
        Tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        EosIds = model.File.Tokenizer.EosIds;
        ChatTemplate = ChatTemplate.For(Tokenizer, model.File.Tokenizer);
    }

    public static TextModel Load(string path, TextModelOptions? options = null)
    {
        options ??= new();
        var model = LanguageModel.Load(path, new CpuBackendOptions { Threads = options.Threads });
        Session? session = null;
        try
        {
            session = new Session(model,
                new SessionOptions { ContextLength = options.ContextLength, KvCache = options.KvCache });
            return new TextModel(path, model, session);
        }
        catch
        {
            session?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>A completion of <paramref name="prompt"/> (BOS added).</summary>
    public Task<GenerationResult> GenerateAsync(string prompt, GenerationOptions? options = null,
        CancellationToken cancellation = default) =>
        RunAsync(EncodePrompt(prompt), WithModelDefaults(options, chat: false), cancellation);

    /// <summary>The assistant's reply to <paramref name="messages"/>, in the model's chat template.</summary>
    public Task<GenerationResult> ChatAsync(IReadOnlyList<ChatTemplate.Message> messages,
        GenerationOptions? options = null, CancellationToken cancellation = default) =>
        RunAsync(ChatTemplate.Encode(messages), WithModelDefaults(options, chat: true), cancellation);

    /// <summary><see cref="GenerateAsync"/> as a stream: text pieces, then the result.</summary>
    public IAsyncEnumerable<GenerationUpdate> StreamAsync(string prompt, GenerationOptions? options = null,
        CancellationToken cancellation = default) =>
        StreamIdsAsync(EncodePrompt(prompt), WithModelDefaults(options, chat: false), cancellation);

    /// <summary><see cref="ChatAsync"/> as a stream: text pieces, then the result.</summary>
    public IAsyncEnumerable<GenerationUpdate> StreamChatAsync(IReadOnlyList<ChatTemplate.Message> messages,
        GenerationOptions? options = null, CancellationToken cancellation = default) =>
        StreamIdsAsync(ChatTemplate.Encode(messages), WithModelDefaults(options, chat: true), cancellation);

    private int[] EncodePrompt(string prompt) => string.IsNullOrEmpty(prompt)
        ? throw new ArgumentException("the prompt is empty", nameof(prompt))
        : Tokenizer.Encode(prompt, addBos: true);

    // The model's EOS ids unless the caller gave some, and for a chat the template's end-of-turn ids and stop strings.
    private GenerationOptions WithModelDefaults(GenerationOptions? options, bool chat)
    {
        options ??= new();
        var eos = options.EosIds.Count > 0 ? options.EosIds : EosIds;
        return !chat ? options with { EosIds = eos } : options with
        {
            EosIds = [.. eos, .. ChatTemplate.EndOfTurnIds],
            StopStrings = [.. options.StopStrings, .. ChatTemplate.StopStrings],
        };
    }

    private async Task<GenerationResult> RunAsync(int[] prompt, GenerationOptions options,
        CancellationToken cancellation)
    {
        await _turn.WaitAsync(cancellation);
        try
        {
            _session.Reset();
            var result = await Task.Run(() => new Generator(_session, Tokenizer).Generate(prompt, options,
                cancellation: cancellation), CancellationToken.None);
            cancellation.ThrowIfCancellationRequested();
            return result;
        }
        finally
        {
            _turn.Release();
        }
    }

    private async IAsyncEnumerable<GenerationUpdate> StreamIdsAsync(int[] prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellation)
    {
        await _turn.WaitAsync(cancellation);
        try
        {
            _session.Reset();
            await foreach (var update in new Generator(_session, Tokenizer).StreamAsync(prompt, options, cancellation))
                yield return update;
            cancellation.ThrowIfCancellationRequested();
        }
        finally
        {
            _turn.Release();
        }
    }

    public void Dispose()
    {
        _session.Dispose();
        _model.Dispose();
        _turn.Dispose();
    }
}

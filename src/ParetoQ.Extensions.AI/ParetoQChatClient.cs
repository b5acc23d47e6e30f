using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Extensions.AI;

/// <summary>
/// <see cref="IChatClient"/> over a local ParetoQ model: messages go through the model's chat template, <see
/// cref="ChatOptions"/> map to the sampler (temperature, top-p, top-k, seed), the token limit and stop sequences, and
/// every response carries its usage. Cancellation stops generation within a token and throws
/// <see cref="OperationCanceledException"/>.
/// </summary>
public sealed class ParetoQChatClient : IChatClient
{
    private readonly TextModel _model;
    private readonly bool _ownsModel;
    private readonly ChatClientMetadata _metadata;

    /// <param name="ownsModel">Dispose <paramref name="model"/> with this client.</param>
    public ParetoQChatClient(TextModel model, bool ownsModel = false)
    {
        (_model, _ownsModel) = (model, ownsModel);
        _metadata = new ChatClientMetadata("paretoq", null, model.Name);
    }

    /// <summary>Loads a .pq model for this client alone.</summary>
    public static ParetoQChatClient Load(string path, TextModelOptions? options = null) =>
        new(TextModel.Load(path, options), ownsModel: true);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var result = await _model.ChatAsync(ToTemplate(messages), ToGeneration(options), cancellationToken);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ModelId = _model.Name,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = FinishReason(result.Reason),
            Usage = Usage(result),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string responseId = Guid.NewGuid().ToString("N");
        await foreach (var update in _model.StreamChatAsync(ToTemplate(messages), ToGeneration(options),
            cancellationToken))
        {
            if (update.Result is not { } result)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, update.Text)
                    { ModelId = _model.Name, ResponseId = responseId };
                continue;
            }
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
            {
                ModelId = _model.Name, ResponseId = responseId, FinishReason = FinishReason(result.Reason),
            };
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(TextModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_ownsModel) _model.Dispose();
    }

    private static List<ChatTemplate.Message> ToTemplate(IEnumerable<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<ChatTemplate.Message>();
        foreach (var m in messages)
        {
            string role = m.Role == ChatRole.System ? "system" : m.Role == ChatRole.User ? "user"
                : m.Role == ChatRole.Assistant ? "assistant"
                : throw new NotSupportedException(
                    $"chat role '{m.Role}' is not supported: this model has no tool calls");
            list.Add(new(role, m.Text));
        }
        if (list.Count == 0) throw new ArgumentException("there are no messages", nameof(messages));
        return list;
    }

    // Unset options keep the engine's defaults (SamplerOptions, GenerationOptions).
    private static GenerationOptions ToGeneration(ChatOptions? options)
    {
        var generation = new GenerationOptions();
        if (options is null) return generation;
        var sampler = generation.Sampler;
        if (options.Temperature is { } temperature) sampler = sampler with { Temperature = temperature };
        if (options.TopP is { } topP) sampler = sampler with { TopP = topP };
        if (options.TopK is { } topK) sampler = sampler with { TopK = topK };
        if (options.Seed is { } seed) sampler = sampler with { Seed = (ulong)seed };
        sampler.Validate();
        if (options.MaxOutputTokens is < 1)
            throw new ArgumentException($"MaxOutputTokens {options.MaxOutputTokens} must be at least 1");
        return generation with
        {
            Sampler = sampler,
            MaxTokens = options.MaxOutputTokens ?? generation.MaxTokens,
            StopStrings = options.StopSequences is { } stops ? [.. stops.Where(s => s.Length > 0)] : [],
        };
    }

    private static ChatFinishReason FinishReason(StopReason reason) =>
        reason is StopReason.EndOfSequence or StopReason.StopString ? ChatFinishReason.Stop : ChatFinishReason.Length;

    private static UsageDetails Usage(GenerationResult r) => new()
    {
        InputTokenCount = r.PromptTokens,
        OutputTokenCount = r.GeneratedTokens,
        TotalTokenCount = r.PromptTokens + r.GeneratedTokens,
    };
}

using System.ClientModel;
using Microsoft.Extensions.AI;
using OpenAI;
using ParetoQ.Extensions.AI;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;
using ParetoQ.Serve;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The application-facing API on the shipped stories260K-2bit model: TextModel, the IChatClient over it, and the
/// same IChatClient abstraction reaching paretoq-serve through Microsoft.Extensions.AI.OpenAI.
/// </summary>
public sealed class ChatClientTests
{
    private static string ModelPath => Path.Combine(TestData.RepoRoot(), "models", "stories260K-2bit.pq");

    private static readonly ChatMessage[] Conversation =
        [new(ChatRole.System, "You tell stories."), new(ChatRole.User, "Tell me about a dog.")];

    private static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 30 };

    [Fact]
    public async Task TextModel_takes_eos_from_the_model_and_returns_statistics()
    {
        using var text = TextModel.Load(ModelPath, new TextModelOptions { Threads = 1 });
        var options = new GenerationOptions { MaxTokens = 400, Sampler = SamplerOptions.Greedy };
        var result = await text.GenerateAsync("Once upon a time", options);

        // The same generation through the low-level API, EOS ids passed by hand.
        using var model = LanguageModel.Load(ModelPath);
        using var session = new Session(model);
        var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        var expected = new Generator(session, tokenizer).Generate(tokenizer.Encode("Once upon a time", addBos: true),
            options with { EosIds = model.File.Tokenizer.EosIds });
        Assert.Equal(expected.Text, result.Text);
        Assert.Equal(StopReason.EndOfSequence, result.Reason); // a TinyStories story ends well within 400 tokens
        Assert.Equal(tokenizer.Encode("Once upon a time", addBos: true).Length, result.PromptTokens);
        Assert.True(result.DecodeTokensPerSecond > 0);
        Assert.Equal("stories260K-2bit", text.Name);
        Assert.Equal(ChatFormat.Plain, text.ChatTemplate.Format);

        // Each call starts from an empty context: the same call gives the same text.
        Assert.Equal(result.Text, (await text.GenerateAsync("Once upon a time", options)).Text);
    }

    [Fact]
    public async Task TextModel_samples_with_a_random_seed_unless_one_is_given()
    {
        using var text = TextModel.Load(ModelPath, new TextModelOptions { Threads = 1 });
        var unseeded = new List<string>();
        for (int i = 0; i < 3; i++)
            unseeded.Add((await text.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 40 })).Text);
        Assert.True(unseeded.Distinct().Count() > 1, "three unseeded calls gave the same text");

        var seeded = new GenerationOptions { MaxTokens = 40, Sampler = new SamplerOptions { Seed = 42 } };
        Assert.Equal((await text.GenerateAsync("Once upon a time", seeded)).Text,
            (await text.GenerateAsync("Once upon a time", seeded)).Text);
    }

    [Fact]
    public async Task The_chat_client_answers_whole_and_streamed_with_usage_and_finish_reasons()
    {
        using var client = ParetoQChatClient.Load(ModelPath, new TextModelOptions { Threads = 1 });
        var whole = await client.GetResponseAsync(Conversation, Greedy);
        Assert.Equal(ChatRole.Assistant, whole.Messages.Single().Role);
        Assert.False(string.IsNullOrWhiteSpace(whole.Text));
        Assert.Equal("stories260K-2bit", whole.ModelId);
        Assert.NotNull(whole.Usage);
        Assert.InRange(whole.Usage!.OutputTokenCount!.Value, 1, 30);
        Assert.Equal(whole.Usage.InputTokenCount + whole.Usage.OutputTokenCount, whole.Usage.TotalTokenCount);
        if (whole.Usage.OutputTokenCount == 30) Assert.Equal(ChatFinishReason.Length, whole.FinishReason);

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, Greedy)) updates.Add(update);
        var streamed = updates.ToChatResponse();
        Assert.Equal(whole.Text, streamed.Text);
        Assert.Equal(whole.FinishReason, streamed.FinishReason);
        Assert.Equal(whole.Usage.OutputTokenCount, streamed.Usage?.OutputTokenCount);

        // A stop sequence ends the reply before it.
        string cut = whole.Text.Length > 4 ? whole.Text.Substring(2, 2) : whole.Text;
        var stopped = await client.GetResponseAsync(Conversation,
            new ChatOptions { Temperature = 0, MaxOutputTokens = 30, StopSequences = [cut] });
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
        Assert.Equal(whole.Text[..whole.Text.IndexOf(cut, StringComparison.Ordinal)], stopped.Text);

        var metadata = client.GetService<ChatClientMetadata>();
        Assert.Equal("paretoq", metadata?.ProviderName);
        Assert.Equal("stories260K-2bit", metadata?.DefaultModelId);
    }

    [Fact]
    public async Task Cancellation_and_unsupported_input_fail_clearly()
    {
        using var client = ParetoQChatClient.Load(ModelPath, new TextModelOptions { Threads = 1 });
        using var cancel = new CancellationTokenSource();
        var long_ = new ChatOptions { Temperature = 0, MaxOutputTokens = 400 };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(Conversation, long_, cancel.Token))
                cancel.Cancel();
        });
        cancel.TryReset();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(()
            => client.GetResponseAsync(Conversation, long_, new CancellationToken(canceled: true)));

        var tool = await Assert.ThrowsAsync<NotSupportedException>(()
            => client.GetResponseAsync([new ChatMessage(ChatRole.Tool, "42")]));
        Assert.Contains("tool", tool.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([]));
        await Assert.ThrowsAsync<ArgumentException>(()
            => client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 0 }));

        // The client still works after all that.
        Assert.False(string.IsNullOrEmpty((await client.GetResponseAsync(Conversation, Greedy)).Text));
    }

    [Fact]
    public async Task The_server_through_the_openai_chat_client_answers_as_the_local_client_does()
    {
        await using var server = await OpenAiServer.StartAsync(new ServerOptions
            { Model = ModelPath, Port = 0, Threads = 1, Log = TextWriter.Null });
        var openAi = new OpenAIClient(new ApiKeyCredential("unused"),
            new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1") });
        using IChatClient remote = openAi.GetChatClient("stories260K-2bit").AsIChatClient();
        using var local = ParetoQChatClient.Load(ModelPath, new TextModelOptions { Threads = 1 });

        var fromServer = await remote.GetResponseAsync(Conversation, Greedy);
        var fromEngine = await local.GetResponseAsync(Conversation, Greedy);
        Assert.Equal(fromEngine.Text, fromServer.Text);
        Assert.Equal(fromEngine.FinishReason, fromServer.FinishReason);
        Assert.Equal(fromEngine.Usage?.OutputTokenCount, fromServer.Usage?.OutputTokenCount);
        Assert.Equal(fromEngine.Usage?.InputTokenCount, fromServer.Usage?.InputTokenCount);

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in remote.GetStreamingResponseAsync(Conversation, Greedy)) updates.Add(update);
        Assert.Equal(fromEngine.Text, updates.ToChatResponse().Text);
    }
}

using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// A chat that outlives its context, on the shipped model's tokenizer and template: the oldest turns leave first, the
/// system message stays, and a conversation file round-trips, refuses hostile content and never replaces a file.
/// </summary>
public sealed class ChatHistoryTests : IDisposable
{
    private readonly TempDir _dir = new();
    private static string ShippedModel => Path.Combine(TestData.RepoRoot(), "models", "stories260K-2bit.pq");

    public void Dispose() => _dir.Dispose();

    private static ChatTemplate Template()
    {
        using var model = LanguageModel.Load(ShippedModel);
        return ChatTemplate.For(Tokenizers.FromFile(model.File, model.Config.VocabSize), model.File.Tokenizer);
    }

    private static List<ChatTemplate.Message> Conversation(int turns)
    {
        var messages = new List<ChatTemplate.Message> { new("system", "You tell short stories.") };
        for (int i = 0; i < turns; i++)
        {
            messages.Add(new("user", $"Turn {i}: tell me about a cat and a dog in the park."));
            messages.Add(new("assistant", $"Reply {i}: the cat and the dog played with a red ball all day."));
        }
        messages.Add(new("user", "And then?"));
        return messages;
    }

    [Fact]
    public void The_oldest_turns_leave_first_and_the_system_message_stays()
    {
        var template = Template();
        var all = Conversation(10);
        int whole = template.Encode(all).Length;
        var fitted = new List<ChatTemplate.Message>(all);
        var (ids, dropped) = ChatHistory.Fit(template, fitted, whole / 2);
        Assert.True(ids.Length <= whole / 2);
        Assert.Equal(template.Encode(fitted), ids);
        Assert.True(dropped > 0 && dropped % 2 == 0, $"{dropped} dropped: whole turns go");
        Assert.Equal(all[0], fitted[0]);
        Assert.Equal(all[^(fitted.Count - 1)..], fitted[1..]); // the newest messages, in order
        Assert.Equal("user", fitted[1].Role);
        // The fewest whole turns went: keeping one more would not fit.
        Assert.True(template.Encode([all[0], .. all[^(fitted.Count + 1)..]]).Length > whole / 2);

        // What fits already is left alone.
        var untouched = new List<ChatTemplate.Message>(all);
        Assert.Equal(0, ChatHistory.Fit(template, untouched, whole).Dropped);
        Assert.Equal(all, untouched);

        // The last message with the system message must fit on its own.
        var tooLong = new List<ChatTemplate.Message> { all[0], new("user", new string('x', 400)) };
        Assert.Throws<ContextLengthExceededException>(() => ChatHistory.Fit(template, tooLong, 100));
    }

    [Fact]
    public void A_conversation_file_round_trips_and_is_never_replaced()
    {
        var all = Conversation(2);
        all.Add(new("assistant", "Quotes \" and \\ and ünïcödé 🐈 and\nnew lines."));
        string path = _dir.File("chat.json");
        ChatHistory.Save(path, all);
        Assert.Equal(all, ChatHistory.Load(path));
        byte[] before = File.ReadAllBytes(path);
        Assert.Throws<OutputExistsException>(() => ChatHistory.Save(path, all[..1]));
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData("""{"messages": [{"role": "tool", "content": "x"}]}""", "messages[0].role is 'tool'")]
    [InlineData("""{"messages": [{"role": "user", "content": "x", "name": "y"}]}""", "name")]
    [InlineData("""{"messages": [{"role": "user", "content": "\ud800"}]}""", "not text at messages[0].content")]
    [InlineData("""{"messages": [{"role": "user"}]}""", "content")]
    [InlineData("""{"messages": {"role": "user"}}""", "messages")]
    [InlineData("""{"messages": [], "extra": 1}""", "extra")]
    [InlineData("""[1, 2]""", "must be a JSON object")]
    [InlineData("""{"messages": [""", "not valid JSON")]
    public void A_hostile_conversation_file_is_refused_with_the_place_named(string json, string named)
    {
        string path = _dir.File("bad.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<InvalidDataException>(() => ChatHistory.Load(path));
        Assert.Contains(named, e.Message);
        Assert.StartsWith(path, e.Message);
    }

    [Fact]
    public void Invalid_utf8_in_a_conversation_file_is_refused()
    {
        string path = _dir.File("bad-utf8.json");
        File.WriteAllBytes(path, [.. "{\"messages\": [{\"role\": \"user\", \"content\": \""u8, 0xC3, 0x28, .. "\"}]}"u8]);
        Assert.Contains("not valid UTF-8", Assert.Throws<InvalidDataException>(() => ChatHistory.Load(path)).Message);
    }
}

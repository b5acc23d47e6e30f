using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>Training documents from plain text (one per line) and JSON Lines (one {"text": ...} per line).</summary>
public sealed class TrainingTextTests
{
    [Fact]
    public void Json_lines_keep_line_breaks_quotes_and_unicode_through_a_round_trip()
    {
        using var dir = new TempDir();
        string[] documents =
            ["Once upon a time.\nThe end.", "He said, \u201cWow!\u201d \"Quoted\" \\ tab\t.", "é 日本 🙂"];
        File.WriteAllLines(dir.File("d.jsonl"), documents.Select(TrainingText.JsonLine));
        Assert.Equal(documents, TrainingText.Documents(dir.File("d.jsonl")));
        Assert.Contains("日本", File.ReadAllText(dir.File("d.jsonl"))); // readable, not \u escapes
        Assert.Equal(3, File.ReadAllLines(dir.File("d.jsonl")).Length);

        File.WriteAllText(dir.File("d.txt"), "first line\r\nsecond line\n");
        Assert.Equal(["first line", "second line", ""], TrainingText.Documents(dir.File("d.txt")));
    }

    [Theory]
    [InlineData("{\"text\": \"ok\"}\n{\"text\": \"cut", "d.jsonl:2: not JSON")]
    [InlineData("{\"text\": \"ok\"}\n\n[\"text\"]", "d.jsonl:3: expected a JSON object")]
    [InlineData("{\"story\": \"no text field\"}", "d.jsonl:1: no \"text\" string")]
    [InlineData("{\"text\": 42}", "d.jsonl:1: no \"text\" string")]
    [InlineData("{\"text\": \"\\ud800\"}", "d.jsonl:1: the \"text\" string is not valid Unicode")]
    public void A_bad_json_line_is_an_error_that_names_the_file_and_line(string content, string expected)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("d.jsonl"), content);
        var error = Assert.Throws<InvalidDataException>(() => TrainingText.Documents(dir.File("d.jsonl")).ToList());
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Invalid_utf8_is_an_error_that_names_the_byte()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("d.txt"), [(byte)'o', (byte)'k', 0xC3, 0x28]);
        var error = Assert.Throws<InvalidDataException>(() => TrainingText.Documents(dir.File("d.txt")).ToList());
        Assert.Contains("is not valid UTF-8 (byte 2)", error.Message);
    }
}

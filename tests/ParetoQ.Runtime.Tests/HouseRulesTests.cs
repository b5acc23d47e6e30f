namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The house rules of .editorconfig that the compiler does not check. Lines stay within 120 characters where practical;
/// a line that holds a whole message string may run longer, so the message can still be found with grep. The bound
/// below is the count left when the rule came in: it may only go down.
/// </summary>
public sealed class HouseRulesTests
{
    private const int MaxLine = 120;
    private const int LongLinesAllowed = 294;

    [Fact]
    public void Source_lines_stay_within_120_characters_where_practical()
    {
        string root = TestData.RepoRoot();
        var sources = new[] { "src", "tests", "tools" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")
                && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"));
        var longLines = new List<string>();
        foreach (string file in sources)
        {
            int number = 0;
            foreach (string line in File.ReadLines(file))
            {
                number++;
                if (line.Length > MaxLine)
                    longLines.Add($"{Path.GetRelativePath(root, file)}:{number} ({line.Length})");
            }
        }
        Assert.True(longLines.Count <= LongLinesAllowed,
            $"{longLines.Count} lines are longer than {MaxLine} characters, more than the {LongLinesAllowed} " +
            "allowed; wrap the new ones: " + string.Join(", ", longLines.TakeLast(10)));
    }
}

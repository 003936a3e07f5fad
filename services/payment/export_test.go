package payment

// AnswerOf is answerOf, for the tests of package payment_test.
var AnswerOf = answerOf
